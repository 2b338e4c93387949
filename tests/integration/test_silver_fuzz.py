"""Thousands of random bad payloads never stop the silver stream; each lands in quarantine
with a reason, and nothing reaches silver."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from streaming.config import Settings
from streaming.kafka_client import client_config, ensure_topics
from streaming.runner import run_streams
from streaming.tables import read_delta

pytestmark = pytest.mark.integration
VALID = {
    "event_id": "39263059-f28c-405d-9fb1-7c2390c192cf",
    "event_type": "OrderPlaced",
    "event_time": "2026-01-01T00:00:00.010Z",
    "schema_version": 1,
    "order_id": "O1",
    "customer_id": "C1",
    "amount": 9.5,
    "currency": "EUR",
    "items": 1,
}
WRONG_TYPES: list[Any] = [
    None,
    True,
    -1,
    1e308,
    "",
    "x" * 50,
    [],
    {},
    [1, {"a": [None]}],
    {"nested": {"deep": [[[]]]}},
]


def garbage(rng: random.Random) -> bytes:
    """One payload that breaks the contract, by construction."""
    kind = rng.randrange(7)
    if kind == 0:  # bytes that are not UTF-8
        return bytes([0xFF, 0xFE, 0xFD]) + rng.randbytes(rng.randint(0, 200))
    if kind == 1:  # empty or blank values
        return rng.choice([b"", b" ", b"\n", b"{}", b"[]", b"null", b'""'])
    if kind == 2:  # truncated JSON
        text = json.dumps(VALID).encode()
        return text[: rng.randint(1, len(text) - 1)]
    if kind == 3:  # a field of the wrong type (the required fields have typed rules)
        field = rng.choice(
            [
                "amount",
                "items",
                "event_time",
                "schema_version",
                "currency",
                "event_type",
                "event_id",
            ]
        )
        value = rng.choice(
            [
                w
                for w in WRONG_TYPES
                if not (
                    field in ("event_type", "currency", "event_id") and isinstance(w, str) and w
                )
            ]
            + ["not-valid"]
        )
        return json.dumps({**VALID, field: value}).encode()
    if kind == 4:  # huge strings where an enum or a UUID is expected
        field = rng.choice(["currency", "event_type", "event_id"])
        return json.dumps(
            {**VALID, field: "".join(rng.choices(string.printable, k=rng.randint(10_000, 100_000)))}
        ).encode()
    if kind == 5:  # nested garbage instead of an object
        return json.dumps(rng.choice([[VALID], [[1, 2], {"a": None}], "text", 42, 1.5])).encode()
    # random printable noise
    return "".join(rng.choices(string.printable, k=rng.randint(1, 500))).encode()


def test_random_bad_payloads_all_land_in_quarantine(
    spark: SparkSession, pipeline: Settings
) -> None:
    orders = pipeline.pipeline.sources[0]
    ensure_topics(pipeline.profile.kafka, pipeline.pipeline.sources)
    rng = random.Random(424242)
    payloads = [garbage(rng) for _ in range(3000)]
    producer = Producer({**client_config(pipeline.profile.kafka), "message.max.bytes": 2_000_000})
    for i, payload in enumerate(payloads):
        producer.produce(orders.topic, key=str(i % 50).encode(), value=payload)
        producer.poll(0)
    assert producer.flush(60) == 0

    run_streams(spark, pipeline, [orders.topic], available_now=True)

    quarantine = read_delta(spark, pipeline.table_path("quarantine", orders.table_name))
    silver = read_delta(spark, pipeline.table_path("silver", "orders"))
    assert quarantine is not None and silver is not None
    assert silver.count() == 0
    rows = quarantine.select("value", "reasons").collect()
    assert len(rows) == len(payloads)
    assert all(r.reasons and all(reason for reason in r.reasons) for r in rows)
    assert sorted(bytes(r.value) for r in rows) == sorted(payloads)
