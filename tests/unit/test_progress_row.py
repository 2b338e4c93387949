"""A streaming progress event becomes one ops.stream_progress row, lag included."""

from __future__ import annotations

import pytest

from streaming.progress import offsets_behind, progress_row

pytestmark = pytest.mark.unit

PROGRESS = {
    "id": "q-1",
    "runId": "r-1",
    "name": "bronze_shop_orders",
    "timestamp": "2026-11-24T10:00:01.500Z",
    "batchId": 7,
    "numInputRows": 120,
    "inputRowsPerSecond": 100.0,
    "processedRowsPerSecond": "NaN",
    "durationMs": {"triggerExecution": 850, "addBatch": 700},
    "sources": [
        {
            "description": "KafkaV2[Subscribe[shop.orders]]",
            "startOffset": {"shop.orders": {"0": 10, "1": 20}},
            "endOffset": {"shop.orders": {"0": 70, "1": 80}},
            "latestOffset": {"shop.orders": {"0": 75, "1": 95}},
            "numInputRows": 120,
            "inputRowsPerSecond": 100.0,
            "processedRowsPerSecond": 141.2,
        }
    ],
    "sink": {"description": "DeltaSink[/lake/bronze/shop_orders]"},
}


def test_row_carries_rates_durations_and_lag() -> None:
    row = progress_row(PROGRESS)
    assert row["query_name"] == "bronze_shop_orders"
    assert row["batch_id"] == 7
    assert row["num_input_rows"] == 120
    assert row["processed_rows_per_second"] is None  # NaN is not a rate
    assert row["batch_duration_ms"] == 850
    assert row["duration_ms"] == {"triggerExecution": 850, "addBatch": 700}
    assert row["offsets_behind_latest"] == 5 + 15
    assert row["sources"][0]["offsets_behind_latest"] == 20
    assert row["batch_timestamp"].isoformat() == "2026-11-24T10:00:01.500000"
    assert row["sink"] == "DeltaSink[/lake/bronze/shop_orders]"


def test_lag_counts_partitions_the_batch_has_not_seen_yet() -> None:
    assert offsets_behind('{"t": {"0": 5}}', '{"t": {"0": 5, "1": 3}}') == 3


def test_sources_without_kafka_offsets_have_no_lag() -> None:
    assert offsets_behind('{"sourceVersion": 1, "reservoirVersion": 3}', None) is None
    assert offsets_behind(None, None) is None
