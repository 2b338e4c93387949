"""Appends that commit once per (writer, batch id), checked against the tail of the table's log.

Delta's own idempotent write (`txnAppId`/`txnVersion`) asks the snapshot for its
transactions, and Delta 4.4.0 rebuilds the table's whole state with a Spark job to answer:
hundreds of milliseconds per commit, on every commit of every micro-batch. headwater's
writers are the only writers of their app id (a stream lock per checkpoint), and Spark
replays only the last batch a query began, so one question settles a replay: which batch
did this app id commit last? Each append records `{"headwater_txn": [app id, batch id]}` in
its commit's userMetadata, and the answer is the newest commit carrying the app id, found by
reading the log's newest JSON commits backwards (usually the newest one or two).

Should the log hold no commit of the app id (the writer's first batch; or log cleanup
removed commits older than the log retention while the stream stood still, a month by
default), the batch is checked by its rows instead: when the table already holds a row from
any Kafka record of the batch, the batch was written (a batch commits all its rows or none).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from streaming.delta_log import DeltaLogError, local_path
from streaming.tables import hadoop_path

log = logging.getLogger(__name__)

TXN = "headwater_txn"


class LogCleaned(Exception):
    """The log no longer holds the commits that would answer (log cleanup removed them)."""


class TableLog:
    """The JSON commits of one Delta table's log, read newest first; local paths with Python,
    other locations through Hadoop's FileSystem. Remembers the newest version it saw."""

    def __init__(self, spark: SparkSession, path: str) -> None:
        self.path = path.rstrip("/")
        self._spark = spark
        self._newest = -1
        self._local: Path | None
        try:
            self._local = local_path(self.path) / "_delta_log"
        except DeltaLogError:
            self._local = None

    def _file(self, version: int) -> str:
        return f"{version:020d}.json"

    def read(self, version: int) -> str | None:
        """Commit `version`'s JSON lines; None when the log has no such file."""
        return self.read_named(self._file(version))

    def _exists(self, version: int) -> bool:
        if self._local is not None:
            return (self._local / self._file(version)).is_file()
        return self.read(version) is not None

    def newest_version(self) -> int:
        """The newest commit's version (-1 for no commit): probed forward from the newest seen
        (or the last checkpoint), so a steady writer pays a file test or two."""
        version = max(self._newest, self._last_checkpoint())
        while self._exists(version + 1):
            version += 1
        self._newest = version
        return version

    def _last_checkpoint(self) -> int:
        text = self.read_named("_last_checkpoint")
        if not text:
            return -1
        try:
            return int(json.loads(text)["version"])
        except (ValueError, KeyError, TypeError):
            return -1

    def read_named(self, name: str) -> str | None:
        """The log's file `name`; None when there is none."""
        if self._local is not None:
            try:
                return (self._local / name).read_text()
            except FileNotFoundError:
                return None
        fs, hadoop = hadoop_path(self._spark, f"{self.path}/_delta_log/{name}")
        if not fs.exists(hadoop):
            return None
        stream = fs.open(hadoop)
        try:
            jvm: Any = self._spark._jvm
            return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()


def _txn_of(commit: str) -> tuple[str, int] | None:
    for line in commit.splitlines():
        if '"commitInfo"' not in line:
            continue
        metadata = json.loads(line)["commitInfo"].get("userMetadata")
        if not isinstance(metadata, str) or TXN not in metadata:
            return None
        try:
            app, batch = json.loads(metadata)[TXN]
        except (ValueError, TypeError, KeyError):
            return None
        return str(app), int(batch)
    return None


def last_committed_batch(table: TableLog, app_id: str, newest: int | None = None) -> int | None:
    """The batch id of the newest commit of `app_id` in the table's log; None when the log
    (from its first version) has none. Raises LogCleaned when older commits were cleaned up
    before one of `app_id` was found."""
    version = table.newest_version() if newest is None else newest
    while version >= 0:
        commit = table.read(version)
        if commit is None:
            raise LogCleaned(f"{table.path}: commit {version} is no longer in the log")
        txn = _txn_of(commit)
        if txn is not None and txn[0] == app_id:
            return txn[1]
        version -= 1
    return None


_LOGS: dict[str, TableLog] = {}
_LOGS_GUARD = threading.Lock()


def table_log(spark: SparkSession, path: str) -> TableLog:
    """This driver's one TableLog of the table at `path`."""
    with _LOGS_GUARD:
        found = _LOGS.get(path)
        if found is None:
            found = _LOGS[path] = TableLog(spark, path)
        return found


def committed(
    spark: SparkSession,
    rows: DataFrame,
    path: str,
    app_id: str,
    batch_id: int,
    record_columns: Sequence[str],
) -> bool:
    """Whether batch `batch_id` of writer `app_id` is already in the table at `path`."""
    table = table_log(spark, path)
    newest = table.newest_version()
    if newest < 0:
        return False  # no table yet: the write creates it
    try:
        last = last_committed_batch(table, app_id, newest)
    except LogCleaned:
        last = None
    if last is not None:
        return last >= batch_id
    # No commit of this writer in the log: its first batch, or one written before the log
    # was cleaned up (or before headwater recorded its batches): the rows tell.
    log.info(
        "%s: no commit of %s in the log; checking batch %d by its rows", path, app_id, batch_id
    )
    existing = spark.read.format("delta").load(path).select(*record_columns)
    return not rows.select(*record_columns).join(existing, list(record_columns)).isEmpty()


def append_exactly_once(
    rows: DataFrame,
    path: str,
    partition_by: str | None,
    app_id: str,
    batch_id: int,
    record_columns: Sequence[str],
) -> bool:
    """Append `rows` to the Delta table at `path` unless batch `batch_id` of writer `app_id`
    already did (see the module docstring; the caller holds the writer's stream lock).
    `record_columns` name the Kafka record of a row. New columns are merged into the schema.
    Returns whether it wrote."""
    spark = rows.sparkSession
    if committed(spark, rows, path, app_id, batch_id, record_columns):
        return False
    metadata = {TXN: [app_id, batch_id]}
    writer = rows.write.format("delta").mode("append")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    (writer.option("userMetadata", json.dumps(metadata)).option("mergeSchema", "true").save(path))
    return True
