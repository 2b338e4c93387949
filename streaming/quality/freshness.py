"""Freshness: how old a table's newest data is (its newest row's Kafka time, where the table
keeps one; else its last Delta commit), against its SLA from conf."""

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
    # When the newest row reached Kafka: data, not only a commit (a commit may bring old rows).
    newest_data: datetime | None = None

    @property
    def minutes_stale(self) -> float | None:
        """Minutes since the newest data (its Kafka time when known, else the last commit)."""
        since = self.newest_data or self.last_commit
        if since is None:
            return None
        return max(0.0, (self.now - since).total_seconds() / 60)

    @property
    def ok(self) -> bool:
        stale = self.minutes_stale
        return stale is not None and stale <= self.sla_minutes

    def describe(self) -> str:
        if self.last_commit is None:
            return f"{self.table} does not exist yet (SLA {self.sla_minutes:g} min)"
        state = "within" if self.ok else "breaches"
        what = "newest row (Kafka time)" if self.newest_data is not None else "last commit"
        return (
            f"{self.table}: {what} {_ago(self.minutes_stale or 0.0)} ago, {state} its SLA of "
            f"{self.sla_minutes:g} min"
        )


def _ago(minutes: float) -> str:
    return f"{minutes * 60:.1f} s" if minutes < 1 else f"{minutes:.1f} min"


KAFKA_TIME = "kafka_timestamp"


def newest_kafka_time(spark: SparkSession, path: str) -> datetime | None:
    """When the newest row of the Delta table at `path` reached Kafka (UTC); None when the
    table does not exist, keeps no Kafka time or has no rows."""
    from streaming.tables import read_delta

    table = read_delta(spark, path)
    if table is None or KAFKA_TIME not in table.columns:
        return None
    # Epoch seconds, not a timestamp: Python would read one in its own local time zone.
    row = table.agg(F.max(F.col(KAFKA_TIME).cast("double")).alias("newest")).first()
    return datetime.fromtimestamp(row.newest, UTC) if row and row.newest is not None else None


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
