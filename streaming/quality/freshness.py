"""Freshness: minutes since a table's last Delta commit, against its SLA from conf."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F


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


def last_commit_time(spark: SparkSession, path: str) -> datetime | None:
    """The time (UTC) of the latest commit of the Delta table at `path`; None when there is
    no table there yet."""
    from delta.tables import DeltaTable

    try:
        history = DeltaTable.forPath(spark, path).history(1)
    except AnalysisException as exc:
        if "DELTA_MISSING_DELTA_TABLE" in (exc.getCondition() or "") or "not a Delta table" in str(
            exc
        ):
            return None
        raise
    # Epoch seconds, not a timestamp: Python would read one in its own local time zone.
    row = history.select(F.col("timestamp").cast("double").alias("at")).first()
    return None if row is None else datetime.fromtimestamp(row.at, UTC)
