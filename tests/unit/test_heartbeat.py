"""Every progress event leaves a small JSON heartbeat per query that a supervisor reads
without Spark: the last batch, its rates and lag, and the last sign of life."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from streaming.config import Settings
from streaming.progress import (
    Heartbeat,
    ProgressRecorder,
    heartbeat_dir,
    read_heartbeats,
    write_heartbeat,
)
from tests.conftest import write_conf

pytestmark = pytest.mark.unit

PROGRESS: dict[str, Any] = {
    "id": "q-1",
    "runId": "r-1",
    "name": "bronze_shop_orders",
    "timestamp": "2026-11-24T10:00:01.500Z",
    "batchId": 7,
    "numInputRows": 120,
    "inputRowsPerSecond": 100.0,
    "processedRowsPerSecond": 141.2,
    "durationMs": {"triggerExecution": 850},
    "sources": [
        {
            "description": "KafkaV2[Subscribe[shop.orders]]",
            "startOffset": {"shop.orders": {"0": 10, "1": 20}},
            "endOffset": {"shop.orders": {"0": 70, "1": 80}},
            "latestOffset": {"shop.orders": {"0": 75, "1": 95}},
            "numInputRows": 120,
        }
    ],
    "sink": {"description": "DeltaSink[/lake/bronze/shop_orders]"},
}


class _NoSpark:
    """The recorder's SparkSession, never touched by these tests (progress table off)."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return write_conf(tmp_path, pipeline={"progress": {"enabled": False}})


def recorder(settings: Settings) -> ProgressRecorder:
    return ProgressRecorder(_NoSpark(), settings)  # type: ignore[arg-type]


def test_a_batch_writes_the_heartbeat_of_its_query(settings: Settings) -> None:
    before = time.time()
    recorder(settings).record(json.dumps(PROGRESS))

    beats = read_heartbeats(settings)
    assert set(beats) == {"bronze_shop_orders"}
    beat = beats["bronze_shop_orders"]
    assert (beat.query_id, beat.run_id, beat.status, beat.pid) == (
        "q-1",
        "r-1",
        "running",
        os.getpid(),
    )
    assert beat.batch_id == 7
    assert beat.batch_timestamp == "2026-11-24T10:00:01.500000"
    assert beat.num_input_rows == 120
    assert beat.input_rows_per_second == 100.0
    assert beat.processed_rows_per_second == 141.2
    assert beat.offsets_behind_latest == 5 + 15
    assert before <= beat.updated_at <= time.time()
    [file] = heartbeat_dir(settings).iterdir()  # no temp file left behind
    assert file.name == "bronze_shop_orders.json"


def test_idle_triggers_move_the_heartbeat_but_keep_the_last_batch(settings: Settings) -> None:
    rec = recorder(settings)
    rec.started("bronze_shop_orders", "q-1", "r-1")
    assert read_heartbeats(settings)["bronze_shop_orders"].status == "started"
    assert read_heartbeats(settings)["bronze_shop_orders"].batch_id is None
    rec.record(json.dumps(PROGRESS))
    first = read_heartbeats(settings)["bronze_shop_orders"]

    rec.beat("q-1", "idle")
    idle = read_heartbeats(settings)["bronze_shop_orders"]
    assert idle.status == "idle" and idle.updated_at >= first.updated_at
    assert (idle.batch_id, idle.num_input_rows) == (7, 120)

    rec.beat("q-1", "stopped")
    assert read_heartbeats(settings)["bronze_shop_orders"].status == "stopped"


def test_seconds_since_the_last_batch(settings: Settings) -> None:
    beat = Heartbeat(
        "q", "id", "run", "running", 1, updated_at=1000.0, batch_timestamp="1970-01-01T00:15:00"
    )
    assert beat.seconds_since_batch(now=1000.0) == 100.0
    assert beat.seconds_since_update(now=1010.0) == 10.0
    assert Heartbeat("q", "id", "run", "started", 1, 1000.0).seconds_since_batch() is None


def test_unreadable_files_are_skipped(settings: Settings) -> None:
    write_heartbeat(heartbeat_dir(settings), Heartbeat("silver_orders", "q", "r", "idle", 1, 5.0))
    (heartbeat_dir(settings) / "broken.json").write_text("{not json")
    (heartbeat_dir(settings) / "partial.json").write_text('{"query_name": "x"}')
    assert list(read_heartbeats(settings)) == ["silver_orders"]


def test_no_heartbeats_before_any_stream_ran(settings: Settings) -> None:
    assert read_heartbeats(settings) == {}
