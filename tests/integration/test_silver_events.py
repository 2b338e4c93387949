"""bronze -> silver / quarantine / duplicates over the real broker, judged by an oracle that
reimplements docs/demo-domain.md's rules in plain Python over what the generator sent."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from devstack.generator.producer import Delivered
from streaming.config import Settings
from streaming.runner import run_streams
from streaming.tables import read_delta
from tests.conftest import TOPOLOGIES
from tests.helpers import produce_shop

pytestmark = pytest.mark.integration

CURRENCIES = {"EUR", "USD", "GBP", "JPY"}
Coordinate = tuple[str, int, int]


def _valid_order(e: dict[str, Any]) -> bool:
    return (
        e.get("schema_version") in (1, 2)
        and e.get("event_type") in {"OrderPlaced", "OrderCancelled"}
        and _is_str(e.get("order_id"))
        and _is_str(e.get("customer_id"))
        and isinstance(e.get("items"), int)
        and e["items"] >= 1
        and (
            e["schema_version"] == 1 or e.get("coupon_code") is None or len(e["coupon_code"]) <= 32
        )
    )


def _valid_payment(e: dict[str, Any]) -> bool:
    return (
        e.get("schema_version") == 1
        and e.get("event_type") in {"PaymentSucceeded", "PaymentFailed"}
        and _is_str(e.get("payment_id"))
        and _is_str(e.get("order_id"))
        and e.get("method") in {"card", "bank_transfer", "wallet"}
    )


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and len(v) >= 1


def _common_ok(e: dict[str, Any]) -> bool:
    try:
        uuid.UUID(e["event_id"])
        datetime.fromisoformat(e["event_time"].replace("Z", "+00:00"))
        amount = Decimal(str(e["amount"]))
    except (KeyError, ValueError, TypeError, AttributeError, InvalidOperation):
        return False
    return (
        amount >= 0
        and e.get("currency") in CURRENCIES
        and bool(re.match(r"^[0-9a-f-]{36}$", e["event_id"]))
    )


def oracle(
    sent: list[Delivered], orders_topic: str
) -> tuple[dict[Coordinate, str], set[Coordinate], set[Coordinate]]:
    """(silver event id by coordinate, quarantine coordinates, duplicate coordinates)."""
    valid: list[tuple[Coordinate, str]] = []
    quarantine: set[Coordinate] = set()
    for d in sorted(sent, key=lambda d: (d.topic, d.partition, d.offset)):
        where = (d.topic, d.partition, d.offset)
        try:
            event = json.loads((d.value or b"").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            quarantine.add(where)
            continue
        rule = _valid_order if d.topic == orders_topic else _valid_payment
        if isinstance(event, dict) and _common_ok(event) and rule(event):
            valid.append((where, event["event_id"]))
        else:
            quarantine.add(where)
    silver: dict[Coordinate, str] = {}
    duplicates: set[Coordinate] = set()
    seen: set[tuple[str, str]] = set()
    for where, event_id in valid:  # sorted by partition and offset: the first copy wins
        if (where[0], event_id) in seen:
            duplicates.add(where)
        else:
            seen.add((where[0], event_id))
            silver[where] = event_id
    return silver, quarantine, duplicates


def coordinates(spark: SparkSession, path: str, id_column: str | None = None) -> Counter[Any]:
    table = read_delta(spark, path)
    assert table is not None, path
    columns = [
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        *([id_column] if id_column else []),
    ]
    return Counter(tuple(r) for r in table.select(*columns).collect())


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_record_lands_once_in_silver_quarantine_or_duplicates(
    spark: SparkSession, pipeline: Settings
) -> None:
    orders, payments = pipeline.pipeline.sources[0], pipeline.pipeline.sources[1]
    sent = produce_shop(pipeline, 1500, seed=21, faults="all")
    # The same seed again: its first 300 records repeat the first run's, in later batches.
    sent += produce_shop(pipeline, 300, seed=21, faults="all")
    run_streams(spark, pipeline, available_now=True)

    expected_silver, expected_quarantine, expected_duplicates = oracle(sent, orders.topic)
    assert len(expected_quarantine) > 50 and len(expected_duplicates) > 250

    silver = coordinates(spark, pipeline.table_path("silver", "orders"), "event_id")
    silver += coordinates(spark, pipeline.table_path("silver", "payments"), "event_id")
    assert silver == Counter((*k, v) for k, v in expected_silver.items())

    quarantined = coordinates(spark, pipeline.table_path("quarantine", orders.table_name))
    quarantined += coordinates(spark, pipeline.table_path("quarantine", payments.table_name))
    assert quarantined == Counter(expected_quarantine)

    duplicates = coordinates(spark, pipeline.table_path("duplicates", orders.table_name))
    duplicates += coordinates(spark, pipeline.table_path("duplicates", payments.table_name))
    assert duplicates == Counter(expected_duplicates)

    # Nothing lost, nothing doubled: bronze = silver + quarantine + duplicates.
    assert len(sent) == sum(silver.values()) + sum(quarantined.values()) + sum(duplicates.values())

    # A rerun (and a replayed batch) changes nothing.
    run_streams(spark, pipeline, available_now=True)
    again = coordinates(spark, pipeline.table_path("silver", "orders"), "event_id")
    again += coordinates(spark, pipeline.table_path("silver", "payments"), "event_id")
    assert again == silver


def test_quarantine_keeps_raw_value_reasons_and_coordinates(
    spark: SparkSession, pipeline: Settings
) -> None:
    orders = pipeline.pipeline.sources[0]
    sent = produce_shop(
        pipeline,
        600,
        seed=22,
        faults="malformed=0.05,violations=0.05,null_values=0.02,unknown_version=0.02",
    )
    run_streams(spark, pipeline, available_now=True)
    table = read_delta(spark, pipeline.table_path("quarantine", orders.table_name))
    assert table is not None
    by_where = {(d.partition, d.offset): d for d in sent if d.topic == orders.topic}
    rows = table.collect()
    assert rows
    for row in rows:
        original = by_where[(row.kafka_partition, row.kafka_offset)]
        assert (bytes(row.value) if row.value is not None else None) == original.value
        assert row.reasons and all(isinstance(r, str) and r for r in row.reasons)
        assert [e.message for e in row.errors] == row.reasons
    reasons = {reason.split(":")[0] for row in rows for reason in row.reasons}
    assert {"record", "schema_version"} <= reasons


def test_v2_events_add_their_column_and_v1_rows_stay_null(
    spark: SparkSession, pipeline: Settings
) -> None:
    produce_shop(pipeline, 400, seed=23, faults="v2=0.3")
    run_streams(spark, pipeline, available_now=True)
    silver = read_delta(spark, pipeline.table_path("silver", "orders"))
    assert silver is not None
    per_version = silver.groupBy("schema_version").agg(
        F.count("*").alias("n"), F.count("coupon_code").alias("with_coupon")
    )
    counts = {r.schema_version: (r.n, r.with_coupon) for r in per_version.collect()}
    assert counts[1][1] == 0, "v1 rows have no coupon_code"
    assert counts[2][0] > 20 and 0 < counts[2][1] <= counts[2][0]
