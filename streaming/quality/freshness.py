"""Freshness: minutes since a table's last Delta commit, against its SLA from conf."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from streaming.maintenance import OPERATIONS


@dataclass(frozen=True)
class Freshness:
    """How stale table `table` was at `now`; `last_commit` is None when it does not exist."""

    table: str
    last_commit: datetime | None
    sla_minutes: float
    now: datetime

    @property
    def minutes_stale(self) -> float | None:
        if self.last_commit is None:
            return None
        return max(0.0, (self.now - self.last_commit).total_seconds() / 60)

    @property
    def ok(self) -> bool:
        stale = self.minutes_stale
        return stale is not None and stale <= self.sla_minutes

    def describe(self) -> str:
        if self.last_commit is None:
            return f"{self.table} does not exist yet (SLA {self.sla_minutes:g} min)"
        state = "within" if self.ok else "breaches"
        stale = self.minutes_stale or 0.0
        ago = f"{stale * 60:.1f} s" if stale < 1 else f"{stale:.1f} min"
        return f"{self.table}: last commit {ago} ago, {state} its SLA of {self.sla_minutes:g} min"


# How far back to look for a commit that is not maintenance (streaming.maintenance): a run
# makes at most four per table, so this spans many runs.
HISTORY_DEPTH = 50


def last_commit_time(spark: SparkSession, path: str) -> datetime | None:
    """The time (UTC) of the latest commit of the Delta table at `path` that is not maintenance
    (OPTIMIZE, VACUUM, a property change: they change no rows); None when there is no table
    there yet. A table with nothing but maintenance in its last HISTORY_DEPTH commits gets the
    oldest of them: at least that stale."""
    from delta.tables import DeltaTable

    try:
        history = DeltaTable.forPath(spark, path).history(HISTORY_DEPTH)
    except AnalysisException as exc:
        if "DELTA_MISSING_DELTA_TABLE" in (exc.getCondition() or "") or "not a Delta table" in str(
            exc
        ):
            return None
        raise
    # Epoch seconds, not a timestamp: Python would read one in its own local time zone.
    at = F.col("timestamp").cast("double")
    row = history.agg(
        F.max(F.when(~F.col("operation").isin(*OPERATIONS), at)).alias("written"),
        F.min(at).alias("oldest"),
    ).first()
    if row is None or row.oldest is None:
        return None
    return datetime.fromtimestamp(row.written if row.written is not None else row.oldest, UTC)
