"""Which topology last wrote a source's tables, and what a switch between the two needs.

- fused: one query per Kafka topic (checkpoint: bronze's) writes bronze, then silver, in
  each micro-batch;
- layered: one query per table, each reading the layer before it as a Delta stream.

Gold has a query per table, reading silver as Delta streams, in both. Both topologies write
the same tables, and the Kafka offsets live in the same checkpoint (bronze's), so a switch
keeps them. What does not carry over is a half-done batch (each topology makes its own
writes idempotent) and the layered silver checkpoints, which a fused period leaves behind the
bronze tables they read. So a switch drains the old topology first (an availableNow run:
every batch it began is finished, every record of Kafka is in gold), and a switch to layered
then starts silver afresh at the end of bronze (its old checkpoints are set aside,
`startingVersion` = the table's next version). The runner does the switch
(streaming/runner.py); this module keeps the records.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from streaming.config import Settings, Source, Topology

log = logging.getLogger(__name__)


def _record_dir(settings: Settings) -> Path:
    return settings.state_dir / "topology"


def _record(settings: Settings, source: Source) -> Path:
    return _record_dir(settings) / f"{source.table_name}.json"


def _starts(settings: Settings) -> Path:
    return _record_dir(settings) / "starting-versions.json"


def last_topology(settings: Settings, source: Source) -> Topology | None:
    """The topology that last ran `source`'s streams, as recorded; None without a record
    (never run, or run before topologies were recorded: runner.switching_sources takes a
    source with a bronze checkpoint and no record for layered, the only topology then)."""
    path = _record(settings, source)
    if path.is_file():
        value = json.loads(path.read_text()).get("topology")
        if value in ("fused", "layered"):
            return value  # type: ignore[no-any-return]
    return None


def record_topology(settings: Settings, source: Source, topology: Topology) -> None:
    """Remember that `topology` now runs `source`'s streams."""
    _write_json(_record(settings, source), {"topology": topology, "since": time.time()})


def _write_json(path: Path, value: object) -> None:
    """Replace `path` with `value` as JSON atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def checkpoint_epoch(settings: Settings, checkpoint: str) -> str:
    """'' for a checkpoint never set aside; else '-<when it was>': a suffix that makes the app
    ids of the fresh checkpoint's writers new (its batch ids start at 0 again, and Delta's
    txn of the old app id would take them for replays)."""
    path = _starts(settings)
    if not path.is_file():
        return ""
    epoch = json.loads(path.read_text()).get(checkpoint, {}).get("epoch")
    return f"-{epoch}" if epoch is not None else ""


def starting_version(settings: Settings, checkpoint: str, table_path: str) -> int | None:
    """The `startingVersion` of the layered stream at `checkpoint` reading `table_path`, when
    a switch from fused recorded where it starts (Spark reads it until the checkpoint holds
    an offset, then ignores it); None: Spark's default, the table's whole history."""
    path = _starts(settings)
    if not path.is_file():
        return None
    starts: dict[str, dict[str, Any]] = json.loads(path.read_text())
    start = starts.get(checkpoint, {}).get("tables", {}).get(table_path)
    return int(start) if start is not None else None


def restart_at_end(
    spark: SparkSession, settings: Settings, streams: Mapping[str, list[str]]
) -> None:
    """For each layered checkpoint of `streams` (checkpoint -> the tables its query reads):
    set the old checkpoint aside and record that a fresh one starts after each table's latest
    version (at a commit without rows made here, so the version exists whenever the stream
    starts: Delta refuses a version it does not hold yet, and 'latest' would be read only
    when the stream starts, after commits it must not skip). Called after a drain, under
    every stream lock of these tables, when every row of them is already downstream."""
    path = _starts(settings)
    starts: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}
    epoch = time.time_ns()
    for checkpoint, tables in streams.items():
        versions = {}
        for table in tables:
            if _latest_version(spark, table) is not None:
                versions[table] = _empty_commit(spark, table, epoch)
        starts[checkpoint] = {"tables": versions, "epoch": epoch}
        _set_aside(spark, checkpoint, epoch)
    _write_json(path, starts)


def _empty_commit(spark: SparkSession, table: str, epoch: int) -> int:
    """A commit without rows on the Delta table at `table` (a table property saying when the
    layered streams restarted after it; Delta commits no empty append); its version."""
    location = table.replace("`", "``")
    spark.sql(
        f"ALTER TABLE delta.`{location}` SET TBLPROPERTIES ('headwater.layeredRestart' = '{epoch}')"
    )
    version = _latest_version(spark, table)
    assert version is not None
    return version


def _latest_version(spark: SparkSession, table: str) -> int | None:
    from delta.tables import DeltaTable

    from streaming.tables import has_delta_log

    if not has_delta_log(spark, table):
        return None
    last = DeltaTable.forPath(spark, table).history(1).select("version").first()
    return int(last.version) if last is not None else None


def _set_aside(spark: SparkSession, checkpoint: str, epoch: int) -> None:
    """Rename `checkpoint` (any Hadoop-compatible path) to `<checkpoint>.before-<epoch>`."""
    from streaming.tables import hadoop_path

    fs, location = hadoop_path(spark, checkpoint)
    if fs.exists(location):
        _, aside = hadoop_path(spark, f"{checkpoint.rstrip('/')}.before-{epoch}")
        if not fs.rename(location, aside):
            raise OSError(f"could not move the stale checkpoint {checkpoint} aside")
        log.info("checkpoint %s set aside (the fused topology wrote past it)", checkpoint)
