"""Contracts load from conf/, compile to Spark types and rules, and judge records exactly."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from streaming.contracts.model import load_contract
from streaming.contracts.spark import check_records, silver_schema
from streaming.errors import ConfigError

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
ORDERS = load_contract(REPO / "conf", "shop.orders")
GOOD = {
    "event_id": "39263059-f28c-405d-9fb1-7c2390c192cf",
    "event_type": "OrderPlaced",
    "event_time": "2026-01-01T00:00:00.010Z",
    "schema_version": 1,
    "order_id": "O1",
    "customer_id": "C1",
    "amount": 99.86,
    "currency": "EUR",
    "items": 1,
}


def value(**changes: object) -> bytes:
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def judge(spark: SparkSession, *values: bytes | None) -> list[list[str]]:
    frame = spark.createDataFrame([(v,) for v in values], "value binary")
    rows = check_records(frame, ORDERS).collect()
    return [[e.message for e in r._errors] for r in rows]


def test_silver_schema_is_the_union_of_versions_typed() -> None:
    schema = silver_schema(ORDERS)
    assert schema.simpleString() == (
        "struct<event_id:string,event_type:string,event_time:timestamp,schema_version:int,"
        "order_id:string,customer_id:string,amount:decimal(12,2),currency:string,items:int,"
        "coupon_code:string>"
    )


def test_valid_v1_and_v2_records_parse_with_their_types(spark: SparkSession) -> None:
    frame = spark.createDataFrame(
        [(value(),), (value(schema_version=2, coupon_code="X"),)], "value binary"
    )
    out = check_records(frame, ORDERS).select(
        "event_id", "event_time", "amount", "coupon_code", "_version", "_errors", "_warnings"
    )
    expected = spark.createDataFrame(
        [
            (
                GOOD["event_id"],
                datetime(2026, 1, 1, 0, 0, 0, 10000),
                Decimal("99.86"),
                None,
                1,
                [],
                [],
            ),
            (
                GOOD["event_id"],
                datetime(2026, 1, 1, 0, 0, 0, 10000),
                Decimal("99.86"),
                "X",
                2,
                [],
                [],
            ),
        ],
        out.schema,
    )
    assertDataFrameEqual(out, expected)


def test_record_level_problems(spark: SparkSession) -> None:
    assert judge(spark, None, b"\xff\xfe{}", b"[1,2]", b'{"event_id": 5', b'"text"', b"{}") == [
        ["record: the value is null"],
        ["record: the value is not valid UTF-8"],
        ["record: the value is not a JSON object"],
        ["record: the value is not a JSON object"],
        ["record: the value is not a JSON object"],
        ["schema_version: required (it chooses the contract version)"],
    ]


def test_every_broken_rule_is_reported(spark: SparkSession) -> None:
    assert judge(
        spark,
        value(amount=-3),
        value(currency="XXX", items="many"),
        value(schema_version=99),
        value(event_time="yesterday"),
        value(event_time=-1),
        value(amount={"a": 1}),
        value(customer_id=...),
        value(event_id="not-a-uuid", items=0, order_id=""),
        value(schema_version=2, coupon_code="C" * 40),
    ) == [
        ["amount: -3.00 breaks minimum 0"],
        [
            "currency: XXX is not one of 'EUR', 'USD', 'GBP', 'JPY'",
            "items: many is not a valid int",
        ],
        ["schema_version: 99 is not a version of the contract (known: 1, 2)"],
        ["event_time: yesterday is not a valid ISO-8601 date-time"],
        ["event_time: -1 is not a valid ISO-8601 date-time"],
        ['amount: {"a":1} is not a valid decimal(12,2)'],
        ["customer_id: required"],
        [
            "event_id: not-a-uuid is not a UUID",
            "order_id: shorter than 1 characters",
            "items: 0 breaks minimum 1",
        ],
        ["coupon_code: longer than 32 characters"],
    ]


def test_v1_rules_do_not_know_v2_fields(spark: SparkSession) -> None:
    assert judge(spark, value(coupon_code="C" * 40)) == [[]], "v1 ignores unknown fields"


def test_warn_rules_keep_the_row_and_report_a_warning(spark: SparkSession, tmp_path: Path) -> None:
    text = (
        (REPO / "conf/contracts/shop.orders.yaml")
        .read_text()
        .replace("criticality: {}", "criticality: {items.minimum: warn}")
    )
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts/shop.orders.yaml").write_text(text)
    contract = load_contract(tmp_path, "shop.orders")
    frame = spark.createDataFrame([(value(items=0),)], "value binary")
    row = check_records(frame, contract).first()
    assert row is not None
    assert row._errors == [] and [(w.rule, w.message) for w in row._warnings] == [
        ("items.minimum", "items: 0 breaks minimum 1")
    ]


def test_contract_errors_name_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    broken = (
        (REPO / "conf/contracts/shop.orders.yaml")
        .read_text()
        .replace("minLength: 1}", "minLenght: 1}", 1)
    )
    (tmp_path / "contracts/shop.orders.yaml").write_text(broken)
    with pytest.raises(
        ConfigError,
        match=r"shop.orders.yaml: field 'versions.1.properties.order_id.minLenght' is not a known setting",
    ):
        load_contract(tmp_path, "shop.orders")


def test_a_version_closed_to_additional_fields_reports_them(spark: SparkSession) -> None:
    closed = ORDERS.versions[1].model_copy(update={"additional_properties": False})
    contract = ORDERS.model_copy(update={"versions": {**ORDERS.versions, 1: closed}})
    frame = spark.createDataFrame(
        [(value(),), (value(coupon_code="X", note="n"),), (value(schema_version=2, note="n"),)],
        "value binary",
    )
    rows = check_records(frame, contract).collect()
    assert [[e.rule for e in r._errors] for r in rows] == [[], ["additionalProperties"], []]
    message = rows[1]._errors[0].message
    assert message.startswith(
        "fields not in the contract (additionalProperties: false): coupon_code, note;"
    ), "v2 stays open: only version 1 is closed"
