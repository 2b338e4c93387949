"""The demo's lines about how fresh the CDC changes and the events are: medians and 99th percentiles by
nearest rank, per table the changes reached."""

from __future__ import annotations

import pytest

from streaming.visibility import ChangeFreshness

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
