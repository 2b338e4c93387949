"""The demo's lines about how fresh the CDC changes and the events are: medians and 99th percentiles by
nearest rank, per table the changes reached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streaming.visibility import BATCH_TAG, ChangeFreshness, visible_in_gold_ms

pytestmark = pytest.mark.unit


def test_a_line_gives_each_tables_median_and_99th_percentile() -> None:
    freshness = ChangeFreshness(
        to_current_ms=[3000, 1000, 2000, *[1500] * 97],
        to_gold_ms={"customer_orders": [4000, 9000], "other": []},
    )
    assert freshness.describe("silver.customers") == (
        "100 changes, from their commit in the source database: "
        "-> silver.customers p50 1.5 s, p99 2.0 s; -> gold.customer_orders p50 4.0 s, p99 9.0 s"
    )


def test_one_change_and_none() -> None:
    one = ChangeFreshness([1234], {"customer_orders": []})
    assert one.describe("silver.customers") == (
        "1 change, from their commit in the source database: -> silver.customers p50 1.2 s, "
        "p99 1.2 s"
    )
    assert ChangeFreshness([], {"customer_orders": []}).describe("silver.customers") is None


def test_events_are_described_from_kafka() -> None:
    events = ChangeFreshness([800, 1200], {"revenue_per_minute": [2500]}, ("event", "from Kafka"))
    assert events.describe("silver.orders") == (
        "2 events, from Kafka: -> silver.orders p50 0.8 s, p99 1.2 s; "
        "-> gold.revenue_per_minute p50 2.5 s, p99 2.5 s"
    )


def _commit(log: Path, version: int, landed_s: int, tag: str | None) -> None:
    info: dict[str, object] = {"timestamp": landed_s * 1000}
    if tag is not None:
        info["userMetadata"] = json.dumps({BATCH_TAG: tag})
    path = log / f"{version:020d}.json"
    path.write_text(json.dumps({"commitInfo": info}) + "\n")
    os.utime(path, (landed_s, landed_s))


def test_a_fused_batch_makes_its_silver_commit_visible_with_its_gold_commit(
    tmp_path: Path,
) -> None:
    silver, gold = tmp_path / "silver" / "_delta_log", tmp_path / "gold" / "_delta_log"
    silver.mkdir(parents=True)
    gold.mkdir(parents=True)
    _commit(silver, 0, 100, None)  # the table's creation
    _commit(silver, 1, 110, "fused_orders:0")
    _commit(silver, 2, 120, "fused_orders:1")
    _commit(gold, 0, 100, None)
    _commit(gold, 1, 112, "fused_orders:0")
    _commit(gold, 2, 115, "fused_customers:4")  # another query's batch: not silver's
    seen = visible_in_gold_ms(
        str(tmp_path / "gold"), str(tmp_path / "no-checkpoint"), str(tmp_path / "silver")
    )
    assert seen == {1: 112_000}  # batch 1 has not written gold yet
