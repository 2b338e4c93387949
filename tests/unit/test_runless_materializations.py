"""How a table's written commits become Dagster materializations: one per day partition,
the rows of days outside the partitions kept with the newest day, freshness from the
newest event and Kafka times."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest

from orchestration.defs.streams.materializations import _materializations
from streaming.catalog import Table
from streaming.delta_log import Written

pytestmark = pytest.mark.unit

LANDED_MS = 1_796_569_000_000
TEN_S_BEFORE = datetime.fromtimestamp(LANDED_MS / 1000 - 10, UTC).isoformat()


def table(day_column: str | None) -> Table:
    return Table(
        "silver",
        "orders",
        "/lake/silver/orders",
        "",
        ("bronze.orders",),
        "silver:shop.orders",
        day_column,
        event_time="event_time",
    )


def written(rows_by_day: dict[str, int]) -> Written:
    return Written(
        version=7,
        commits=3,
        rows_added=sum(rows_by_day.values()) or 10,
        rows_total=500,
        landed_ms=LANDED_MS,
        rows_by_day=rows_by_day,
        newest={"event_time": TEN_S_BEFORE, "kafka_timestamp": "not a time"},
    )


def test_one_materialization_per_day_written_and_the_rows_add_up() -> None:
    found = _materializations(
        table("event_date"),
        written({"2026-12-05": 4, "2026-12-06": 5, "2025-01-01": 2, "garbage": 1}),
        date(2026, 1, 1),
        date(2026, 12, 6),
    )
    assert [m.partition for m in found] == ["2026-12-05", "2026-12-06"]
    rows = {m.partition: m.metadata["rows_added"].value for m in found}
    assert rows == {"2026-12-05": 4, "2026-12-06": 5 + 2 + 1}  # outside: with the newest day
    meta = found[-1].metadata
    assert meta["delta_version"].value == 7 and meta["rows_total"].value == 500
    assert meta["seconds_event_to_visible"].value == pytest.approx(10.0)
    assert "seconds_kafka_to_visible" not in meta  # not a timestamp: left out, no error
    assert all(isinstance(m, dg.AssetMaterialization) for m in found)


def test_an_unpartitioned_table_gets_one_materialization() -> None:
    [only] = _materializations(table(None), written({}), date(2026, 1, 1), date(2026, 12, 6))
    assert only.partition is None and only.metadata["rows_added"].value == 10
