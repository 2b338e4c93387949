"""Every micro-batch's progress, recorded to the Delta table `ops.stream_progress`.

A `StreamingQueryListener` only queues each progress event (it runs on Spark's listener
thread, which must not block); a background thread appends the queued rows to Delta every few
seconds and once more when the recorder stops. Dagster, the notebooks and the benchmarks all
read this one table to see how the streams run.

Besides, every event (a batch, an idle trigger, a start, an end) rewrites a small JSON
heartbeat per query under `<state_dir>/streams/`: the last batch and the last sign of life, which
a supervisor reads every few seconds without starting Spark (`read_heartbeats`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming.listener import StreamingQueryListener
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming.config import Settings

log = logging.getLogger(__name__)

LAYER, TABLE = "ops", "stream_progress"

SOURCE_PROGRESS = StructType(
    [
        StructField("description", StringType()),
        StructField("start_offset", StringType()),
        StructField("end_offset", StringType()),
        StructField("latest_offset", StringType()),
        StructField("num_input_rows", LongType()),
        StructField("input_rows_per_second", DoubleType()),
        StructField("processed_rows_per_second", DoubleType()),
        StructField("offsets_behind_latest", LongType()),
    ]
)
PROGRESS_SCHEMA = StructType(
    [
        StructField("query_name", StringType()),
        StructField("query_id", StringType()),
        StructField("run_id", StringType()),
        StructField("batch_id", LongType()),
        StructField("batch_timestamp", TimestampType()),
        StructField("num_input_rows", LongType()),
        StructField("input_rows_per_second", DoubleType()),
        StructField("processed_rows_per_second", DoubleType()),
        StructField("batch_duration_ms", LongType()),
        StructField("duration_ms", MapType(StringType(), LongType())),
        StructField("offsets_behind_latest", LongType()),
        StructField("sources", ArrayType(SOURCE_PROGRESS)),
        StructField("sink", StringType()),
        StructField("recorded_at", TimestampType()),
    ]
)


def offsets_behind(end_offset: str | None, latest_offset: str | None) -> int | None:
    """Records between where a batch ended and the newest offset Kafka had, summed over all
    partitions; None for sources without Kafka-style offsets (e.g. Delta)."""
    try:
        end, latest = json.loads(end_offset or "null"), json.loads(latest_offset or "null")
    except json.JSONDecodeError:
        return None
    if not isinstance(end, dict) or not isinstance(latest, dict):
        return None
    behind = 0
    for topic, partitions in latest.items():
        if not isinstance(partitions, dict):
            return None
        done = end.get(topic, {})
        for partition, newest in partitions.items():
            behind += max(0, int(newest) - int(done.get(partition, 0)))
    return behind


def progress_row(progress: Any) -> dict[str, Any]:
    """One ops.stream_progress row from a StreamingQueryProgress (or its JSON as a dict)."""
    p = progress if isinstance(progress, dict) else json.loads(progress.json)
    sources = []
    for s in p.get("sources", []):
        end, latest = _as_json(s.get("endOffset")), _as_json(s.get("latestOffset"))
        sources.append(
            {
                "description": s.get("description"),
                "start_offset": _as_json(s.get("startOffset")),
                "end_offset": end,
                "latest_offset": latest,
                "num_input_rows": int(s.get("numInputRows") or 0),
                "input_rows_per_second": _float(s.get("inputRowsPerSecond")),
                "processed_rows_per_second": _float(s.get("processedRowsPerSecond")),
                "offsets_behind_latest": offsets_behind(end, latest),
            }
        )
    behind = [s["offsets_behind_latest"] for s in sources if s["offsets_behind_latest"] is not None]
    durations = {k: int(v) for k, v in (p.get("durationMs") or {}).items()}
    return {
        "query_name": p.get("name"),
        "query_id": p.get("id"),
        "run_id": p.get("runId"),
        "batch_id": int(p.get("batchId", -1)),
        "batch_timestamp": _timestamp(p.get("timestamp")),
        "num_input_rows": int(p.get("numInputRows") or 0),
        "input_rows_per_second": _float(p.get("inputRowsPerSecond")),
        "processed_rows_per_second": _float(p.get("processedRowsPerSecond")),
        "batch_duration_ms": durations.get("triggerExecution"),
        "duration_ms": durations,
        "offsets_behind_latest": sum(behind) if behind else None,
        "sources": sources,
        "sink": (p.get("sink") or {}).get("description"),
        "recorded_at": datetime.now(UTC).replace(tzinfo=None),
    }


def _as_json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result else None  # NaN -> None


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    return (
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        .astimezone(UTC)
        .replace(tzinfo=None)
    )


HEARTBEATS = "streams"


@dataclass(frozen=True)
class Heartbeat:
    """The last thing one query's driver said: its last batch and when it last showed life.

    `status` is started (no batch yet in this run), running (the last event was a batch), idle
    (a trigger found no new data), stopped or failed. `updated_at` (epoch seconds) moves on
    every event, idle triggers included, so an idle stream is not taken for a stuck one.
    """

    query_name: str
    query_id: str
    run_id: str
    status: str
    pid: int
    updated_at: float
    batch_id: int | None = None
    batch_timestamp: str | None = None  # ISO-8601, UTC
    num_input_rows: int | None = None
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None
    offsets_behind_latest: int | None = None

    def seconds_since_update(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.updated_at

    def seconds_since_batch(self, now: float | None = None) -> float | None:
        """Seconds since the last batch of this query ran; None before its first batch."""
        if self.batch_timestamp is None:
            return None
        at = datetime.fromisoformat(self.batch_timestamp).replace(tzinfo=UTC).timestamp()
        return (time.time() if now is None else now) - at


def heartbeat_dir(settings: Settings) -> Path:
    return settings.state_dir / HEARTBEATS


def _heartbeat_file(directory: Path, query_name: str) -> Path:
    return directory / (re.sub(r"[^A-Za-z0-9._-]", "_", query_name) + ".json")


def write_heartbeat(directory: Path, heartbeat: Heartbeat) -> None:
    """Replace the heartbeat file of `heartbeat.query_name` atomically (temp file + rename), so a
    reader sees the old beat or the new one, never half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    target = _heartbeat_file(directory, heartbeat.query_name)
    handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(asdict(heartbeat), out)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_heartbeats(settings: Settings) -> dict[str, Heartbeat]:
    """The newest heartbeat of every query that ever ran under these settings, by query name;
    files that cannot be read or parsed are skipped (and logged)."""
    directory = heartbeat_dir(settings)
    beats: dict[str, Heartbeat] = {}
    if not directory.is_dir():
        return beats
    known = {f.name for f in fields(Heartbeat)}
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            beat = Heartbeat(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError):
            log.warning("skipping unreadable stream heartbeat %s", path, exc_info=True)
            continue
        beats[beat.query_name] = beat
    return beats


def heartbeat_of(row: dict[str, Any], *, pid: int, now: float) -> Heartbeat:
    """The heartbeat of a query whose last batch is this ops.stream_progress row."""
    stamp = row["batch_timestamp"]
    return Heartbeat(
        query_name=row["query_name"] or row["query_id"],
        query_id=str(row["query_id"]),
        run_id=str(row["run_id"]),
        status="running",
        pid=pid,
        updated_at=now,
        batch_id=row["batch_id"],
        batch_timestamp=stamp.isoformat() if stamp is not None else None,
        num_input_rows=row["num_input_rows"],
        input_rows_per_second=row["input_rows_per_second"],
        processed_rows_per_second=row["processed_rows_per_second"],
        offsets_behind_latest=row["offsets_behind_latest"],
    )


class _Listener(StreamingQueryListener):
    def __init__(self, recorder: ProgressRecorder) -> None:
        self.recorder = recorder

    def onQueryStarted(self, event: Any) -> None:
        log.info("stream %s started (id %s)", event.name, event.id)
        self.recorder.started(event.name, str(event.id), str(event.runId))

    def onQueryProgress(self, event: Any) -> None:
        self.recorder.record(event.progress.json)

    def onQueryIdle(self, event: Any) -> None:
        self.recorder.beat(str(event.id), "idle")

    def onQueryTerminated(self, event: Any) -> None:
        if event.exception:
            log.error("stream %s stopped with an error: %s", event.id, event.exception)
        self.recorder.beat(str(event.id), "failed" if event.exception else "stopped")
        self.recorder.terminated(str(event.id))


class ProgressRecorder:
    """Listens to every stream of a SparkSession and appends their progress to
    ops.stream_progress. Use as a context manager, or call start() and stop()."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.path = settings.table_path(LAYER, TABLE)
        self.interval = settings.pipeline.progress.flush_interval_seconds
        self.enabled = settings.pipeline.progress.enabled
        self.rows_by_query: Counter[str] = Counter()
        self.last_by_query: dict[str, dict[str, Any]] = {}
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()  # counters, touched by the listener thread
        self._flush_lock = threading.Lock()  # one Delta append at a time
        self._terminated: set[str] = set()
        self._terminated_changed = threading.Condition()
        self.heartbeats = heartbeat_dir(settings)
        self._beats: dict[str, Heartbeat] = {}  # by query id; touched by the listener thread
        self._listener = _Listener(self)
        self._thread = threading.Thread(target=self._run, name="progress-recorder", daemon=True)

    def __enter__(self) -> ProgressRecorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.spark.streams.addListener(self._listener)
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        """Stop listening and write what is still queued."""
        try:
            self.spark.streams.removeListener(self._listener)
        except Exception:  # the session may already be gone at interpreter exit
            log.debug("could not remove the progress listener", exc_info=True)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)
        elif self.enabled:
            self.flush()

    def record(self, progress_json: str) -> None:
        row = progress_row(json.loads(progress_json))
        name = row["query_name"] or row["query_id"]
        with self._stats_lock:
            self.rows_by_query[name] += row["num_input_rows"]
            self.last_by_query[name] = row
        if self.enabled:
            self._queue.put(row)
        self._write_beat(heartbeat_of(row, pid=os.getpid(), now=time.time()))

    def started(self, name: str | None, query_id: str, run_id: str) -> None:
        """A query (re)started: its heartbeat says so before its first batch."""
        self._write_beat(
            Heartbeat(
                query_name=name or query_id,
                query_id=query_id,
                run_id=run_id,
                status="started",
                pid=os.getpid(),
                updated_at=time.time(),
            )
        )

    def beat(self, query_id: str, status: str) -> None:
        """A sign of life without a batch (idle trigger) or the end of a query: the last
        heartbeat of that query, with its new status and time."""
        with self._stats_lock:
            last = self._beats.get(query_id)
        if last is not None:
            self._write_beat(replace(last, status=status, updated_at=time.time()))

    def _write_beat(self, heartbeat: Heartbeat) -> None:
        with self._stats_lock:
            self._beats[heartbeat.query_id] = heartbeat
        try:
            write_heartbeat(self.heartbeats, heartbeat)
        except OSError:  # a missed beat is harmless; a listener exception is not
            log.warning("could not write the heartbeat of %s", heartbeat.query_name, exc_info=True)

    def terminated(self, query_id: str) -> None:
        with self._terminated_changed:
            self._terminated.add(query_id)
            self._terminated_changed.notify_all()

    def wait_for_termination(self, query_ids: set[str], timeout_s: float = 60.0) -> bool:
        """Block until the listener has seen these queries end, so their last progress event
        is counted (Spark delivers listener events asynchronously, in order). Returns False
        when `timeout_s` passed first."""
        with self._terminated_changed:
            return self._terminated_changed.wait_for(
                lambda: query_ids <= self._terminated, timeout=timeout_s
            )

    def flush(self) -> int:
        """Append every queued row to ops.stream_progress now; returns how many."""
        with self._flush_lock:
            rows = []
            while True:
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if rows:
                try:
                    frame = self.spark.createDataFrame(rows, PROGRESS_SCHEMA)
                    frame.write.format("delta").mode("append").save(self.path)
                except Exception:
                    for row in rows:  # keep them for the next flush
                        self._queue.put(row)
                    raise
        return len(rows)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._flush_logged()
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # keep the streams running; the next flush retries the rows
            log.exception("could not write stream progress to %s", self.path)
