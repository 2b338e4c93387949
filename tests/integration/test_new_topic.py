"""A topic the demo does not have becomes tables with nothing but its contract and a few
lines of conf: no Python change."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from streaming.config import Settings, load_settings
from streaming.kafka_client import client_config, ensure_topics
from streaming.runner import run_streams
from streaming.tables import read_table
from tests.conftest import write_conf

pytestmark = pytest.mark.integration

REFUNDS_CONTRACT = """
topic: {topic}
kind: events
silver_table: refunds
compatibility: full
fields: {{id: refund_id, event_time: refunded_at, version: version}}
versions:
  1:
    type: object
    required: [refund_id, refunded_at, version, order_id, amount, reason]
    properties:
      refund_id: {{type: string, pattern: "^R[0-9]+$"}}
      refunded_at: {{type: string, format: date-time}}
      version: {{type: integer, const: 1}}
      order_id: {{type: string}}
      amount: {{type: number, exclusiveMinimum: 0, x-spark-type: "decimal(10,2)"}}
      reason: {{type: string, enum: [damaged, late, other]}}
"""


def test_a_new_topic_needs_only_conf(
    spark: SparkSession, broker: Settings, tmp_path: Path, unique: str
) -> None:
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    topic = f"t{unique}.refunds"
    write_conf(tmp_path, topics=[topic], kafka_port=port)  # bronze only: no contract yet
    conf = tmp_path / "conf"
    (conf / "contracts" / f"{topic}.yaml").write_text(
        textwrap.dedent(REFUNDS_CONTRACT.format(topic=topic))
    )
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["sources"] = [{"topic": topic, "kind": "events", "partitions": 2}]  # the few lines
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    settings = load_settings(conf, "local", environ={})

    ensure_topics(settings.profile.kafka, settings.pipeline.sources)
    refunds = [
        {
            "refund_id": "R1",
            "refunded_at": "2026-05-01T10:00:00Z",
            "version": 1,
            "order_id": "O1",
            "amount": 5.5,
            "reason": "late",
        },
        {
            "refund_id": "R2",
            "refunded_at": "2026-05-01T10:01:00Z",
            "version": 1,
            "order_id": "O2",
            "amount": 0,
            "reason": "late",
        },
        {
            "refund_id": "R3",
            "refunded_at": "2026-05-01T10:02:00Z",
            "version": 1,
            "order_id": "O3",
            "amount": 7,
            "reason": "lost",
        },
        {
            "refund_id": "R1",
            "refunded_at": "2026-05-01T10:00:00Z",
            "version": 1,
            "order_id": "O1",
            "amount": 5.5,
            "reason": "late",
        },
    ]
    producer = Producer(client_config(settings.profile.kafka))
    for refund in refunds:
        producer.produce(topic, key=refund["order_id"].encode(), value=json.dumps(refund).encode())
    assert producer.flush(30) == 0

    run_streams(spark, settings, available_now=True)

    silver = read_table(spark, settings, "silver.refunds")
    quarantine = read_table(
        spark, settings, f"quarantine.{settings.pipeline.sources[0].table_name}"
    )
    duplicates = read_table(
        spark, settings, f"duplicates.{settings.pipeline.sources[0].table_name}"
    )
    assert silver is not None and quarantine is not None and duplicates is not None
    assert [(r.refund_id, str(r.amount)) for r in silver.collect()] == [("R1", "5.50")]
    assert sorted(r.reasons[0] for r in quarantine.collect()) == [
        "amount: 0.00 breaks exclusiveMinimum 0",
        "reason: lost is not one of 'damaged', 'late', 'other'",
    ]
    assert [r.event_id for r in duplicates.collect()] == ["R1"]
