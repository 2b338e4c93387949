"""`headwater run` with one spark-submit application per layer gives the exact tables; and
quarantined records are copied to the dead-letter topic when conf says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from pyspark.sql import SparkSession

from devstack.cli import main
from streaming.config import Settings
from streaming.deploy import deployed_layers
from streaming.kafka_client import client_config
from streaming.reconcile import reconcile
from streaming.runner import run_streams
from streaming.tables import read_table
from tests.conftest import write_conf
from tests.helpers import bronze_records, expected_records, produce_shop
from tests.integration.test_silver_events import coordinates, oracle

pytestmark = pytest.mark.integration


def settings_with(
    broker: Settings, tmp_path: Path, unique: str, pipeline: dict[str, object]
) -> Settings:
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    return write_conf(
        tmp_path,
        topics=[f"t{unique}.orders", f"t{unique}.payments"],
        kafka_port=port,
        pipeline=pipeline,
    )


def test_application_per_layer_gives_the_same_exact_tables(
    spark: SparkSession, broker: Settings, tmp_path: Path, unique: str
) -> None:
    settings = settings_with(
        broker,
        tmp_path,
        unique,
        {"topology": "layered", "deployment": {"mode": "application_per_layer"}},
    )
    sent = produce_shop(settings, 200, seed=61, faults="all")
    assert deployed_layers(settings) == ["bronze", "silver"]  # no gold table: no gold app
    # Each layer's application is a plain spark-submit of streaming/jobs/<layer>.py, as on a
    # cluster (streaming/deploy.py builds the command docs/cluster.md shows).
    assert main(["--conf", str(settings.conf_dir), "run", "--available-now"]) == 0
    assert bronze_records(spark, settings) == expected_records(sent)
    expected_silver, _, _ = oracle(sent, settings.pipeline.sources[0].topic)
    silver = coordinates(spark, settings.table_path("silver", "orders"), "event_id")
    silver += coordinates(spark, settings.table_path("silver", "payments"), "event_id")
    assert silver == {(*k, v): 1 for k, v in expected_silver.items()}
    assert reconcile(spark, settings).ok


def test_quarantined_records_reach_the_dead_letter_topic(
    spark: SparkSession, broker: Settings, tmp_path: Path, unique: str
) -> None:
    settings = settings_with(broker, tmp_path, unique, {"silver": {"dead_letter_topics": True}})
    orders = settings.pipeline.sources[0]
    produce_shop(settings, 300, seed=62, faults="malformed=0.1,violations=0.1")
    run_streams(spark, settings, [orders.topic], available_now=True)
    quarantine = read_table(spark, settings, f"quarantine.{orders.table_name}")
    assert quarantine is not None
    expected = {(bytes(r.value), tuple(r.reasons)) for r in quarantine.collect()}
    assert expected

    consumer = Consumer(
        {
            **client_config(settings.profile.kafka),
            "group.id": unique,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([f"{orders.topic}.dlq"])
    found: set[tuple[bytes, tuple[str, ...]]] = set()
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=500, timeout=1.0):
                if message.error() is None:
                    headers = dict(message.headers() or [])
                    found.add((message.value(), tuple(json.loads(headers["headwater-reasons"]))))
            if found >= expected:
                break
    finally:
        consumer.close()
    assert found == expected
