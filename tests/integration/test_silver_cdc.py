"""Debezium envelopes -> silver.customers (SCD1) and silver.customers_history (SCD2), in lsn
order whatever the arrival order, judged by an oracle over what was sent."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from devstack.generator.customers import CustomerChanges
from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates
from streaming.config import Settings
from streaming.kafka_client import ensure_topics
from streaming.runner import run_streams
from streaming.tables import read_delta
from tests.conftest import TOPOLOGIES, write_conf
from tests.helpers import START

pytestmark = pytest.mark.integration
FIELDS = ("customer_id", "name", "email", "country", "segment")


@pytest.fixture
def cdc(broker: Settings, tmp_path: Path, unique: str, topology: str) -> Settings:
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    return write_conf(
        tmp_path,
        topics=[f"t{unique}.customers"],
        kafka_port=port,
        pipeline={"topology": topology},
    )


def send_changes(settings: Settings, count: int, seed: int, faults: str) -> list[Delivered]:
    source = settings.pipeline.sources[0]
    ensure_topics(settings.profile.kafka, [source])
    changes = CustomerChanges(
        seed, START, faults=FaultRates.parse(faults), initial=40, topic=source.topic
    )
    return produce(settings.profile.kafka, changes, count=count, keep_deliveries=True).deliveries


def oracle(
    sent: list[Delivered],
) -> tuple[dict[str, tuple[Any, ...]], dict[str, list[tuple[int, bool]]]]:
    """(current row per key, [(lsn, is_current)] per key) from the changes in lsn order."""
    by_key: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for d in sent:
        if d.value is None:
            continue  # tombstone
        change = json.loads(d.value)
        row = change["after"] if change["op"] != "d" else change["before"]
        by_key[row["customer_id"]][change["source"]["lsn"]] = change  # duplicates collapse
    current: dict[str, tuple[Any, ...]] = {}
    history: dict[str, list[tuple[int, bool]]] = {}
    for key, changes in by_key.items():
        ordered = [changes[lsn] for lsn in sorted(changes)]
        versions = []
        for i, change in enumerate(ordered):
            if change["op"] != "d":
                versions.append((change["source"]["lsn"], i == len(ordered) - 1))
        history[key] = versions
        last = ordered[-1]
        if last["op"] != "d":
            current[key] = tuple(last["after"][f] for f in FIELDS)
    return current, history


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_cdc_applies_in_lsn_order_with_duplicates_and_late_changes(
    spark: SparkSession, cdc: Settings
) -> None:
    sent = send_changes(cdc, 900, seed=31, faults="duplicates=0.05,out_of_order=0.1")
    faults = {d.fault for d in sent}
    assert {"duplicates", "out_of_order"} <= faults
    ops = {json.loads(d.value)["op"] for d in sent if d.value}
    assert ops == {"r", "c", "u", "d"} and any(d.value is None for d in sent), (
        "snapshot, changes, tombstones"
    )

    run_streams(spark, cdc, available_now=True)
    expected_current, expected_history = oracle(sent)

    current = read_delta(spark, cdc.table_path("silver", "customers"))
    assert current is not None
    got = {r.customer_id: tuple(r[f] for f in FIELDS) for r in current.collect()}
    assert got == expected_current

    history = read_delta(spark, cdc.table_path("silver", "customers_history"))
    assert history is not None
    versions: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for r in history.orderBy("customer_id", "lsn").collect():
        versions[r.customer_id].append((r.lsn, r.is_current))
    assert dict(versions) == {k: v for k, v in expected_history.items() if v}
    open_versions = history.where("is_current").count()
    assert open_versions == len(expected_current)

    # More changes later, some of them older than what was applied: still exact.
    sent += send_changes(cdc, 300, seed=32, faults="out_of_order=0.3")
    run_streams(spark, cdc, available_now=True)
    expected_current, _ = oracle(sent)
    current = read_delta(spark, cdc.table_path("silver", "customers"))
    assert current is not None
    assert {
        r.customer_id: tuple(r[f] for f in FIELDS) for r in current.collect()
    } == expected_current


def test_broken_envelopes_go_to_quarantine_and_tombstones_do_not(
    spark: SparkSession, cdc: Settings
) -> None:
    from confluent_kafka import Producer

    from streaming.kafka_client import client_config

    source = cdc.pipeline.sources[0]
    ensure_topics(cdc.profile.kafka, [source])
    good = send_changes(cdc, 20, seed=33, faults="none")
    envelope = json.loads(next(d.value for d in good if d.value))
    bad = [
        b"not json",
        json.dumps({**envelope, "op": "x"}).encode(),
        json.dumps({**envelope, "source": {"ts_ms": 1}}).encode(),
        json.dumps({**envelope, "after": {**envelope["after"], "country": "Germany"}}).encode(),
        json.dumps({**envelope, "after": None}).encode(),
    ]
    producer = Producer(client_config(cdc.profile.kafka))
    for value in [*bad, None]:
        producer.produce(source.topic, key=b'{"customer_id":"C99999"}', value=value)
    assert producer.flush(30) == 0
    run_streams(spark, cdc, available_now=True)
    quarantine = read_delta(spark, cdc.table_path("quarantine", source.table_name))
    assert quarantine is not None
    reasons = sorted(r.reasons[0] for r in quarantine.collect())
    assert reasons == sorted(
        [
            "record: the value is not a Debezium JSON envelope",
            "op: x is not one of c, u, d, r",
            "source.lsn: required",
            "country: Germany does not match ^[A-Z]{2}$",
            f"op {envelope['op']}: the after image is missing",
        ]
    )
