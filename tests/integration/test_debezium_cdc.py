"""Real change data capture: PostgreSQL (a project-owned cluster) -> Debezium's connector in a
Kafka Connect worker -> Kafka -> bronze -> silver, with the worker and the Spark pipeline
SIGKILLed mid-stream. At rest, silver.customers equals the table row for row, and
silver.customers_history holds one version per snapshot row and committed change. Then, with
every stream running: a change of country reaches gold.customer_orders, and a column added in
PostgreSQL, which the contract does not name, sends the changes to quarantine, saying so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from pyspark.sql import SparkSession

from devstack.demo import FreshnessReport
from devstack.generator.customers_db import (
    Change,
    CustomerWorkload,
    WorkloadReport,
    existing_customers,
    run_workload,
)
from devstack.generator.producer import produce
from devstack.generator.shop import ShopSimulator
from devstack.services.kafka_broker import port_in_use
from devstack.services.kafka_connect import (
    LocalConnect,
    connector_files,
    connector_name,
    wait_until_running,
)
from devstack.services.postgres import connect
from streaming.config import Settings
from streaming.kafka_client import client_config, end_offsets, ensure_topics
from streaming.runner import run_streams
from streaming.tables import read_table
from streaming.visibility import ChangeFreshness
from tests.conftest import TOPOLOGIES
from tests.helpers import START, on_new_commits, table_rows, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
Row = tuple[Any, ...]


def records_in(settings: Settings, topic: str) -> int:
    return sum(end_offsets(settings.profile.kafka, topic).values())


def expected_records(snapshot: int, changes: list[Change]) -> int:
    """What Debezium writes: a read per snapshot row, a record per change, a tombstone after
    each delete."""
    return snapshot + len(changes) + sum(1 for c in changes if c.op == "d")


def _instant(value: datetime) -> float:
    return value.timestamp()  # naive (Spark's collect): local time, like Python's own


def database_rows(settings: Settings) -> dict[str, Row]:
    with connect(settings) as db:
        rows = db.execute(
            "SELECT customer_id, name, email, country, segment, updated_at FROM public.customers"
        ).fetchall()
    return {r[0]: (*r[1:5], _instant(r[5])) for r in rows}


def silver_rows(spark: SparkSession, settings: Settings) -> dict[str, Row]:
    table = read_table(spark, settings, "silver.customers")
    assert table is not None
    rows = table.select("customer_id", "name", "email", "country", "segment", "updated_at")
    return {r[0]: (*r[1:5], _instant(r[5])) for r in rows.collect()}


def history_versions(spark: SparkSession, settings: Settings) -> Counter[str]:
    table = read_table(spark, settings, "silver.customers_history")
    assert table is not None
    return Counter(r.customer_id for r in table.select("customer_id").collect())


def expected_versions(snapshot: list[str], changes: list[Change]) -> Counter[str]:
    """One version per snapshot row and per insert or update; a delete adds none."""
    versions = Counter(snapshot)
    versions.update(c.customer_id for c in changes if c.op != "d")
    return versions


def keys_in(settings: Settings, topic: str) -> set[str]:
    """Every record key of `topic` (Debezium's {"customer_id": ...}), read from the start."""
    consumer = Consumer(
        {
            **client_config(settings.profile.kafka),
            "group.id": f"keys-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    ends = end_offsets(settings.profile.kafka, topic)
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    found: set[str] = set()
    read = dict.fromkeys(ends, 0)
    give_up = time.monotonic() + 60
    try:
        while any(read[p] < ends[p] for p in ends) and time.monotonic() < give_up:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                partition, offset, key = message.partition(), message.offset(), message.key()
                if message.error() is None and partition is not None and offset is not None:
                    read[partition] = offset + 1
                    if key is not None:
                        found.add(json.loads(key)["customer_id"])
    finally:
        consumer.close()
    return found


def pipeline_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack.cli",
                "--conf",
                str(settings.conf_dir),
                "stream",
                "all",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_postgres_changes_reach_silver_exactly_through_debezium_across_sigkills(
    spark: SparkSession, cdc_shop: Settings, cdc_services: Settings, unique: str, tmp_path: Path
) -> None:
    settings = cdc_shop
    topic = settings.pipeline.sources[2].topic
    ensure_topics(settings.profile.kafka, settings.pipeline.sources)
    # Rows that exist before the connector starts: they arrive as snapshot reads (op=r).
    run_workload(settings, CustomerWorkload(41, delete_share=0.0), count=150)
    snapshot = existing_customers(settings)
    assert len(snapshot) > 50
    worker = LocalConnect(settings)
    worker.up()
    try:
        worker.apply_connectors()
        wait_until(lambda: records_in(settings, topic) >= len(snapshot), 120, "the snapshot")
        # Thousands of inserts, updates and deletes, one to four per transaction, while
        # Connect and the pipeline are killed.
        report: list[WorkloadReport] = []
        changing = threading.Thread(
            target=lambda: report.append(
                run_workload(settings, CustomerWorkload(42, snapshot), count=2000, rate=80.0)
            )
        )
        changing.start()
        process = pipeline_process(settings, tmp_path / "pipeline.log")
        try:
            # Connect dies mid-stream; a new worker resumes from the committed WAL position.
            wait_until(
                lambda: records_in(settings, topic) >= len(snapshot) + 300, 120, "changes flowing"
            )
            os.kill(worker.status().pid or 0, signal.SIGKILL)
            # Dead once its process is gone and the kernel has released its REST port.
            wait_until(
                lambda: not worker.status().running and not port_in_use(worker.connect.port),
                60,
                "the worker to die",
            )
            worker.up()
            wait_until_running(worker.rest, connector_name(connector_files(settings)[0]), 120)
            # The pipeline dies mid-stream once silver has applied changes.
            wait_until(
                lambda: process.poll() is not None or table_rows(settings, "silver.customers") > 0,
                300,
                "silver.customers rows",
            )
            assert process.poll() is None, (tmp_path / "pipeline.log").read_text()[-3000:]
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            changing.join(timeout=300)
        [done] = report
        assert done.transactions > 500
        assert {c.op for c in done.changes} == {"c", "u", "d"}
        # The last commit in Kafka means every earlier one is (Debezium keeps commit order).
        with connect(settings) as db:
            db.execute(
                "INSERT INTO public.customers (customer_id, name) VALUES (%s, 'last')",
                [f"last-{unique}"],
            )
            db.commit()
        wait_until(lambda: f"last-{unique}" in keys_in(settings, topic), 120, "the last commit")

        run_streams(spark, settings, available_now=True)  # the restart, caught up

        changes = [*done.changes, Change("c", f"last-{unique}", None)]
        # A restarted connector resends what it had not committed: Kafka may hold more.
        assert records_in(settings, topic) >= expected_records(len(snapshot), changes)
        assert silver_rows(spark, settings) == database_rows(settings)
        assert history_versions(spark, settings) == expected_versions(snapshot, changes)
        applied = read_table(spark, settings, "silver.customers_changes")
        assert applied is not None
        by_op = Counter(r.op for r in applied.select("op").collect())
        assert by_op["r"] == len(snapshot)
        assert by_op["c"] + by_op["u"] + by_op["d"] == len(changes)
        assert quarantined(spark, settings) == [], "Debezium's records all fit the contract"

        # Everything running: a change of country reaches gold; then a column added in
        # PostgreSQL (not in the contract) sends the changes to quarantine, naming it.
        stop, failed = threading.Event(), []
        running = threading.Thread(target=run_until_stopped, args=(spark, settings, stop, failed))
        running.start()
        try:
            to_gold, reasons = change_country_then_add_a_column(spark, settings, cdc_services)
        finally:
            stop.set()
            running.join(timeout=180)
        assert failed == [] and not running.is_alive()
    finally:
        worker.down()

    print(
        f"a change of country committed in PostgreSQL was in gold.customer_orders {to_gold:.1f} s later"
    )
    assert reasons == [
        "fields not in the contract (additionalProperties: false): loyalty_tier; add them to "
        "the contract's properties, then rebuild from bronze"
    ]
    current = read_table(spark, settings, "silver.customers")
    assert current is not None
    [kept] = current.where(f"customer_id = '{PROBE}'").collect()
    assert (kept.segment, kept.country) == ("vip", "FR"), "the quarantined change is not applied"


PROBE = "C99999"  # a customer of the test's own: the workloads never touch it


def run_until_stopped(
    spark: SparkSession, settings: Settings, stop: threading.Event, failed: list[BaseException]
) -> None:
    try:
        run_streams(spark, settings, stop=stop)
    except BaseException as exc:  # the test thread reports it
        failed.append(exc)
        stop.set()


def gold_country(spark: SparkSession, settings: Settings) -> str | None:
    table = read_table(spark, settings, "gold.customer_orders")
    row = None if table is None else table.where(f"customer_id = '{PROBE}'").first()
    return None if row is None else row.country


def quarantined(spark: SparkSession, settings: Settings) -> list[list[str]]:
    """The reasons of each quarantined change."""
    table = read_table(spark, settings, f"quarantine.{settings.pipeline.sources[2].table_name}")
    return [] if table is None else [list(r.reasons) for r in table.select("reasons").collect()]


def change_country_then_add_a_column(
    spark: SparkSession, settings: Settings, services: Settings
) -> tuple[float, list[str]]:
    """(seconds from the commit of a change of country to gold showing it, the reasons of the
    quarantined change after a column was added)."""
    orders, payments = (s.topic for s in settings.pipeline.sources[:2])
    with connect(settings) as db:
        db.execute(
            "INSERT INTO public.customers (customer_id, name, country, segment, updated_at) "
            "VALUES (%s, 'Probe', 'DE', 'vip', now())",
            [PROBE],
        )
        db.commit()
        shop = ShopSimulator(5, START, orders_topic=orders, payments_topic=payments)
        shop.customers = [PROBE]
        produce(settings.profile.kafka, shop, count=6)
        country = on_new_commits(
            settings, "gold.customer_orders", lambda: gold_country(spark, settings)
        )
        wait_until(lambda: country() == "DE", 240, "the probe in gold")
        before_ms = int(time.time() * 1000)
        db.execute(
            "UPDATE public.customers SET country = 'FR', updated_at = now() WHERE customer_id = %s",
            [PROBE],
        )
        db.commit()
        committed = time.monotonic()
        wait_until(
            lambda: country() == "FR",
            240,
            "the new country in gold",
            poll_s=0.2,
        )
        to_gold = time.monotonic() - committed
    # The demo's report of the same change, from the lake's logs and gold's checkpoint alone:
    # the one change committed since, seen in silver.customers and gold within what the test
    # saw (gold's checkpoint commit lands just after the MERGE the test polled for).
    report = FreshnessReport(settings, before_ms)

    def customers() -> ChangeFreshness | None:
        return dict(report.measure()).get("silver.customers")

    wait_until(lambda: (found := customers()) and found.to_current_ms, 60, "the change")
    current_table, freshness = "silver.customers", customers()
    assert freshness is not None
    [to_current] = freshness.to_current_ms
    [to_gold_ms] = freshness.to_gold_ms["customer_orders"]
    assert 0 < to_gold_ms <= to_gold * 1000 + 5000, (to_gold_ms, to_gold)
    assert 0 < to_current < 120_000
    assert (freshness.describe(current_table) or "").startswith("1 change, from their commit")
    assert settings.profile.postgres is not None
    with connect(services, "superuser", database=settings.profile.postgres.database) as admin:
        admin.execute("ALTER TABLE public.customers ADD COLUMN loyalty_tier text")
        admin.execute(
            "UPDATE public.customers SET loyalty_tier = 'gold', segment = 'business' "
            "WHERE customer_id = %s",
            [PROBE],
        )
        admin.commit()
    quarantine = f"quarantine.{settings.pipeline.sources[2].table_name}"
    wait_until(lambda: table_rows(settings, quarantine) > 0, 240, "the change with a new column")
    [reasons] = quarantined(spark, settings)
    return to_gold, reasons
