"""Table maintenance: compact every lake table's small files and clean up what it no longer needs.

For each table of the catalog, as the `maintenance` block of conf/pipeline.yaml says:

- OPTIMIZE rewrites small files into large ones. Its commit changes no rows (dataChange=false),
  so the Delta streams that read the table skip it and still see every row exactly once.
- VACUUM deletes the files the table stopped referencing longer ago than the table's
  delta.deletedFileRetentionDuration (Delta 4.4 ignores a retention passed to VACUUM itself,
  unless it is 0), and Delta deletes the log entries older than delta.logRetentionDuration
  each time it writes a checkpoint (every 10 commits by default). Maintenance sets both
  properties from conf when they differ, in one commit.

Maintenance of a table holds the lock `maintenance:<table>`, so it never runs twice at once on
one table, and takes the lock of the table's stream when that stream is idle, so the stream
does not start meanwhile. While the stream runs, maintenance does only what cannot fail one of
its batches: OPTIMIZE only where the stream appends blindly (a batch that read files a
compaction replaced fails its commit); no property change (it fails every commit made
meanwhile), so a new retention waits for a run that finds the stream stopped; and VACUUM
unless the table would keep removed files for less time than conf says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from streaming.catalog import Table, pipeline_tables
from streaming.config import Settings, TableMaintenance, log_retention_hours
from streaming.errors import ConfigError
from streaming.locks import MAINTENANCE_OWNER, StreamBusy, holder, stream_locks
from streaming.tables import has_delta_log

if TYPE_CHECKING:
    from delta.tables import DeltaTable

log = logging.getLogger(__name__)

LOG_RETENTION = "delta.logRetentionDuration"
FILE_RETENTION = "delta.deletedFileRetentionDuration"
# Delta's values for a table that does not set them.
DELTA_DEFAULTS = {LOG_RETENTION: "interval 30 days", FILE_RETENTION: "interval 1 week"}
# VACUUM lists the table's directories in a job of this many tasks; Spark's default (10,000)
# costs far more than the listing itself on a small cluster (20 s instead of 2 on 2 cores).
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
SPARK_LISTING_PARALLELISM = "10000"
# The commits maintenance makes: none changes a row (freshness looks past them).
OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES")


@dataclass(frozen=True)
class MaintenanceResult:
    """What maintenance did to one table."""

    table: str
    path: str
    files_before: int = 0
    files_after: int = 0
    files_compacted: int = 0  # small files OPTIMIZE replaced
    files_written: int = 0  # the files it wrote in their place
    files_vacuumed: int | None = 0  # None: not counted (VACUUM waited, or Delta logs none)
    bytes_vacuumed: int | None = 0
    file_retention: str | None = None  # the table's delta.deletedFileRetentionDuration afterwards
    log_retention: str | None = None  # and its delta.logRetentionDuration
    skipped: str | None = None  # why nothing was done
    notes: tuple[str, ...] = ()  # steps left out, and why
    duration_seconds: float = 0.0

    def summary(self) -> str:
        """One line for a log: what was done, or why not."""
        if self.skipped is not None:
            return f"{self.table}: skipped ({self.skipped})"
        vacuumed = (
            "an uncounted number of files"
            if self.files_vacuumed is None
            else f"{self.files_vacuumed} files, {self.bytes_vacuumed or 0:,} bytes"
        )
        text = (
            f"{self.table}: {self.files_before} -> {self.files_after} files "
            f"(OPTIMIZE compacted {self.files_compacted} into {self.files_written}), "
            f"VACUUM deleted {vacuumed}, retention: files {_bare(self.file_retention or '')}, "
            f"log {_bare(self.log_retention or '')}, "
            f"{self.duration_seconds:.1f} s"
        )
        return "; ".join([text, *self.notes])


def maintained_tables(settings: Settings, names: Sequence[str] = ()) -> list[Table]:
    """The tables named (qualified, e.g. 'silver.orders'), or every table of the pipeline.

    Raises ConfigError when a name, here or under maintenance.tables in conf, is no table of
    the pipeline.
    """
    tables = {t.qualified: t for t in pipeline_tables(settings)}
    known = ", ".join(tables)
    overrides = sorted(set(settings.pipeline.maintenance.tables) - set(tables))
    if overrides:
        raise ConfigError(
            f"{settings.conf_dir / 'pipeline.yaml'}: field 'maintenance.tables' names "
            f"{', '.join(overrides)}, which the pipeline has no table of: write one of {known}"
        )
    unknown = [n for n in names if n not in tables]
    if unknown:
        raise ConfigError(f"no table {', '.join(unknown)} in the pipeline: choose from {known}")
    return [tables[n] for n in names] if names else list(tables.values())


def maintain_table(
    spark: SparkSession, settings: Settings, qualified: str, *, owner: str = MAINTENANCE_OWNER
) -> MaintenanceResult:
    """Compact and clean table 'layer.table' as conf says; returns what was done.

    Skips (and says why) a table that maintenance is off for, that does not exist yet, or whose
    maintenance runs elsewhere. Raises ConfigError for a table not in the pipeline, and Delta's
    errors as they come (e.g. a commit that conflicted with another writer's).
    """
    [table] = maintained_tables(settings, [qualified])
    policy = settings.pipeline.maintenance.for_table(qualified)
    started = time.monotonic()
    if not policy.enabled:
        return _skipped(table, "maintenance is off for it in conf", started)
    if not has_delta_log(spark, table.path):
        return _skipped(table, "it does not exist yet", started)
    with ExitStack() as held:
        lock = f"maintenance:{qualified}"
        if (running := _hold_if_free(held, settings, lock, owner)) is not None:
            return _skipped(table, f"its maintenance is already running in {running}", started)
        writing = _hold_if_free(held, settings, table.stream, owner)
        result = _maintain(spark, table, policy, writing, started)
    log.info("%s", result.summary())
    return result


def _hold_if_free(held: ExitStack, settings: Settings, lock: str, owner: str) -> str | None:
    """Take `lock` until `held` closes when nobody holds it (None); else who holds it."""
    try:
        held.enter_context(stream_locks(settings, [lock], owner))
    except StreamBusy:
        found = holder(settings, lock)
        return found.describe() if found is not None else "another process"
    return None


def _skipped(table: Table, reason: str, started: float) -> MaintenanceResult:
    log.info("%s: skipped (%s)", table.qualified, reason)
    return MaintenanceResult(
        table.qualified, table.path, skipped=reason, duration_seconds=time.monotonic() - started
    )


def _maintain(
    spark: SparkSession,
    table: Table,
    policy: TableMaintenance,
    writing: str | None,
    started: float,
) -> MaintenanceResult:
    """The maintenance itself; `writing` describes who runs the table's stream (None: idle)."""
    from delta.tables import DeltaTable

    delta = DeltaTable.forPath(spark, table.path)
    before = _detail(delta)
    notes: list[str] = []
    retention = _set_retention(spark, table, policy, before["properties"] or {}, writing, notes)
    compacted, written = _optimize(delta, table, policy, writing, notes)
    vacuumed_files, vacuumed_bytes = _vacuum(spark, delta, table.path, policy, retention, notes)
    return MaintenanceResult(
        table.qualified,
        table.path,
        files_before=int(before["numFiles"]),
        files_after=int(_detail(delta)["numFiles"]),
        files_compacted=compacted,
        files_written=written,
        files_vacuumed=vacuumed_files,
        bytes_vacuumed=vacuumed_bytes,
        file_retention=retention[FILE_RETENTION],
        log_retention=retention[LOG_RETENTION],
        notes=tuple(notes),
        duration_seconds=time.monotonic() - started,
    )


def _detail(delta: DeltaTable) -> dict[str, Any]:
    row = delta.detail().select("numFiles", "properties").first()
    return row.asDict() if row is not None else {"numFiles": 0, "properties": {}}


def retention_properties(policy: TableMaintenance) -> dict[str, str]:
    """The table properties that carry conf's retentions."""
    return {
        FILE_RETENTION: f"interval {policy.vacuum_retention_hours} hours",
        LOG_RETENTION: f"interval {policy.log_retention}",
    }


def _set_retention(
    spark: SparkSession,
    table: Table,
    policy: TableMaintenance,
    properties: dict[str, str],
    writing: str | None,
    notes: list[str],
) -> dict[str, str]:
    """Set the retention properties that differ from conf; returns the table's values after."""
    current = {key: str(properties.get(key, default)) for key, default in DELTA_DEFAULTS.items()}
    wanted = retention_properties(policy)
    changed = {
        key: value for key, value in wanted.items() if not same_duration(current[key], value)
    }
    if not changed:
        return current
    if writing is not None:
        notes.append(
            f"retention stays {_retentions(current)} (conf: {_retentions(wanted)}) until a run "
            f"finds stream {table.stream} stopped: a property change would fail the commit of "
            f"its batch in flight (it runs in {writing})"
        )
        return current
    location = table.path.replace("`", "``")
    assignments = ", ".join(f"'{key}' = '{value}'" for key, value in changed.items())
    spark.sql(f"ALTER TABLE delta.`{location}` SET TBLPROPERTIES ({assignments})")
    return {**current, **changed}


def _retentions(properties: dict[str, str]) -> str:
    return f"files {_bare(properties[FILE_RETENTION])}, log {_bare(properties[LOG_RETENTION])}"


def same_duration(delta_value: str, other: str) -> bool:
    """Whether two retention properties ('interval 30 days') are the same time; False when
    either is written in a form conf does not use."""
    hours = _hours(delta_value)
    return hours is not None and hours == _hours(other)


def _hours(interval: str) -> int | None:
    try:
        return log_retention_hours(_bare(interval))
    except ValueError:
        return None


def _bare(interval: str) -> str:
    return " ".join(interval.lower().split()).removeprefix("interval ")


def _optimize(
    delta: DeltaTable,
    table: Table,
    policy: TableMaintenance,
    writing: str | None,
    notes: list[str],
) -> tuple[int, int]:
    """OPTIMIZE (bin-packing compaction) when conf and the table's stream allow it; returns
    (files removed, files added)."""
    if not policy.optimize:
        return 0, 0
    if writing is not None and not table.blind_appends:
        notes.append(
            f"OPTIMIZE waits for a run that finds stream {table.stream} stopped: it reads this "
            f"table as it writes it, so a compaction now could fail its batch (it runs in "
            f"{writing})"
        )
        return 0, 0
    row = delta.optimize().executeCompaction().select("metrics.*").first()
    if row is None:
        return 0, 0
    return int(row.numFilesRemoved or 0), int(row.numFilesAdded or 0)


def _vacuum(
    spark: SparkSession,
    delta: DeltaTable,
    path: str,
    policy: TableMaintenance,
    retention: dict[str, str],
    notes: list[str],
) -> tuple[int | None, int | None]:
    """VACUUM with the table's delta.deletedFileRetentionDuration, unless that is shorter than
    conf's; returns (files, bytes) deleted, from the commits Delta logs for it (None, None
    when it logs none: its VACUUM logging is off on S3)."""
    from delta.tables import DeltaTable

    kept = _hours(retention[FILE_RETENTION])
    if kept is None or kept < policy.vacuum_retention_hours:
        notes.append(
            f"VACUUM waits: the table keeps removed files {_bare(retention[FILE_RETENTION])}, "
            f"less than conf's {policy.vacuum_retention_hours} hours, until its retention is set"
        )
        return None, None
    since = _version(delta)
    DeltaTable.forPath(_listing_session(spark), path).vacuum()
    commits = _version(delta) - since
    if commits <= 0:
        return None, None
    metrics = {
        str(r.operation): dict(r.operationMetrics or {})
        for r in delta.history(commits)
        .where(F.col("operation").isin("VACUUM START", "VACUUM END"))
        .select("operation", "operationMetrics")
        .collect()
    }
    if "VACUUM END" not in metrics:
        return None, None
    deleted = int(metrics["VACUUM END"].get("numDeletedFiles", 0))
    size = metrics.get("VACUUM START", {}).get("sizeOfDataToDelete")
    return deleted, int(size) if size is not None else None


def _listing_session(spark: SparkSession) -> SparkSession:
    """A session of its own for VACUUM, listing with one task per core unless the profile set
    the listing parallelism; everyone else's session keeps its settings."""
    session = spark.newSession()
    if session.conf.get(LISTING_PARALLELISM) == SPARK_LISTING_PARALLELISM:
        session.conf.set(LISTING_PARALLELISM, str(spark.sparkContext.defaultParallelism))
    return session


def _version(delta: DeltaTable) -> int:
    row = delta.history(1).select("version").first()
    return int(row.version) if row is not None else -1
