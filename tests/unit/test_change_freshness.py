"""The demo's line about how fresh the CDC changes are: medians and 99th percentiles by
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
