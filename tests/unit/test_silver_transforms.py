"""The silver transforms on tiny frames: first copy wins, replays are not duplicates, CDC
changes become history and current state in lsn order."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from streaming.contracts.model import load_cdc_contract
from streaming.contracts.spark import ADDITIONAL
from streaming.silver.cdc import change_rows, current_rows, history_rows, parse_changes
from streaming.silver.events import DUPLICATE, classify, first_per_id

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
CUSTOMERS = load_cdc_contract(REPO / "conf", "shop.public.customers")
COORDS = "event_id string, kafka_topic string, kafka_partition int, kafka_offset long"


def test_first_copy_by_partition_and_offset_wins(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [("e1", "t", 0, 7), ("e1", "t", 0, 3), ("e2", "t", 1, 5), ("e1", "t", 0, 9)], COORDS
    )
    firsts, later = first_per_id(rows, "event_id")
    assertDataFrameEqual(
        firsts, spark.createDataFrame([("e1", "t", 0, 3), ("e2", "t", 1, 5)], COORDS)
    )
    assertDataFrameEqual(
        later, spark.createDataFrame([("e1", "t", 0, 7), ("e1", "t", 0, 9)], COORDS)
    )


def test_a_copy_is_a_later_row_of_its_id_or_one_another_record_wrote_before(
    spark: SparkSession,
) -> None:
    existing = spark.createDataFrame(
        [("e1", "t", 0, 3), ("e2", "t", 1, 5), ("e9", "t", 0, 1)], COORDS
    )
    batch = spark.createDataFrame(
        [
            ("e1", "t", 0, 3),  # e1 from the same record: this batch replayed, not a copy
            ("e1", "t", 1, 9),  # a later row of e1 in the batch: a copy
            ("e2", "t", 1, 8),  # e2 from another record before: a copy
            ("e3", "t", 0, 6),  # the batch's first e3: new
            ("e3", "t", 0, 4),
        ],
        COORDS,
    )
    expected = [
        ("e1", "t", 0, 3, False),
        ("e1", "t", 1, 9, True),
        ("e2", "t", 1, 8, True),
        ("e3", "t", 0, 4, False),
        ("e3", "t", 0, 6, True),
    ]
    schema = f"{COORDS}, {DUPLICATE} boolean"
    assertDataFrameEqual(
        classify(batch, existing, "event_id"), spark.createDataFrame(expected, schema)
    )
    # Without a table yet, only the batch's own order decides.
    assertDataFrameEqual(
        classify(batch, None, "event_id"),
        spark.createDataFrame(
            [
                ("e1", "t", 0, 3, False),
                ("e1", "t", 1, 9, True),
                ("e2", "t", 1, 8, False),
                ("e3", "t", 0, 4, False),
                ("e3", "t", 0, 6, True),
            ],
            schema,
        ),
    )


def envelope(
    op: str,
    lsn: int,
    ts: int,
    country: str | None,
    customer: str = "C1",
    **added: object,
) -> bytes:
    row = {
        **added,
        "customer_id": customer,
        "name": "Ada",
        "email": None,
        "country": country,
        "segment": "vip",
        "updated_at": "2026-01-01T00:00:00.000000Z",
    }
    return json.dumps(
        {
            "before": row if op == "d" else None,
            "after": None if op == "d" else row,
            "source": {"ts_ms": ts, "txId": 1, "lsn": lsn},
            "op": op,
            "ts_ms": ts,
        }
    ).encode()


def bronze(spark: SparkSession, values: list[bytes | None]) -> DataFrame:
    now = datetime(2026, 1, 1)
    return spark.createDataFrame(
        [(b"k", v, [], "cdc", 0, i, now, 0, now, now.date()) for i, v in enumerate(values)],
        "key binary, value binary, headers array<struct<key:string,value:binary>>, topic string, "
        "partition int, offset long, kafka_timestamp timestamp, kafka_timestamp_type int, "
        "ingest_time timestamp, ingest_date date",
    )


def test_history_and_current_follow_lsn_not_arrival(spark: SparkSession) -> None:
    # Arrival order: the update with lsn 30 comes before the older one with lsn 20.
    records = bronze(
        spark,
        [
            envelope("r", 10, 1000, "DE"),
            envelope("u", 30, 3000, "FR"),
            envelope("u", 20, 2000, "GB"),
            None,
        ],
    )
    changes = change_rows(parse_changes(records, CUSTOMERS), CUSTOMERS)
    history = history_rows(changes, CUSTOMERS).select(
        "country", "lsn", "valid_from", "valid_to", "is_current"
    )
    expected = spark.createDataFrame(
        [
            ("DE", 10, datetime(1970, 1, 1, 0, 0, 1), datetime(1970, 1, 1, 0, 0, 2), False),
            ("GB", 20, datetime(1970, 1, 1, 0, 0, 2), datetime(1970, 1, 1, 0, 0, 3), False),
            ("FR", 30, datetime(1970, 1, 1, 0, 0, 3), None, True),
        ],
        history.schema,
    )
    assertDataFrameEqual(history, expected)
    current = current_rows(changes, CUSTOMERS).select("customer_id", "country", "lsn", "op")
    assertDataFrameEqual(current, spark.createDataFrame([("C1", "FR", 30, "u")], current.schema))


def test_a_delete_closes_the_last_version_and_removes_the_current_row(spark: SparkSession) -> None:
    records = bronze(spark, [envelope("c", 10, 1000, "DE"), envelope("d", 40, 4000, "DE"), None])
    changes = change_rows(parse_changes(records, CUSTOMERS), CUSTOMERS)
    history = history_rows(changes, CUSTOMERS).select(
        "lsn", "valid_to", "is_current", "closed_by_delete"
    )
    assertDataFrameEqual(
        history,
        spark.createDataFrame([(10, datetime(1970, 1, 1, 0, 0, 4), False, True)], history.schema),
    )
    assert [r.op for r in current_rows(changes, CUSTOMERS).collect()] == ["d"], (
        "MERGE deletes on it"
    )


def test_tombstones_are_neither_changes_nor_errors(spark: SparkSession) -> None:
    parsed = parse_changes(bronze(spark, [None, envelope("c", 10, 1000, "DE")]), CUSTOMERS)
    rows = parsed.orderBy("offset").select("_tombstone", "_errors").collect()
    assert [(r._tombstone, r._errors) for r in rows] == [(True, []), (False, [])]


def test_a_column_the_contract_does_not_name_is_quarantined_with_its_name(
    spark: SparkSession,
) -> None:
    # shop.public.customers says additionalProperties: false; loyalty_tier was added in Postgres.
    records = bronze(
        spark,
        [
            envelope("u", 10, 1000, "DE"),
            envelope("u", 20, 2000, "DE", loyalty_tier="gold"),
            envelope("d", 30, 3000, "DE", loyalty_tier=None),
        ],
    )
    parsed = parse_changes(records, CUSTOMERS).orderBy("offset")
    errors = [[(e.rule, e.message) for e in r._errors] for r in parsed.collect()]
    expected = (
        "additionalProperties",
        "fields not in the contract (additionalProperties: false): loyalty_tier; add them to "
        "the contract's properties, then rebuild from bronze",
    )
    assert errors == [[], [expected], [expected]]
    assert [r.lsn for r in change_rows(parsed, CUSTOMERS).collect()] == [10]

    # As a warning the change applies (its known columns) and is counted.
    lenient = CUSTOMERS.model_copy(update={"criticality": {"additionalProperties": "warn"}})
    kept = parse_changes(records, lenient).orderBy("offset").collect()
    assert [len(r._errors) for r in kept] == [0, 0, 0]
    assert [[w.rule for w in r._warnings] for r in kept] == [[], [ADDITIONAL], [ADDITIONAL]]
