"""SIGKILL the whole pipeline (every layer in one Spark application) at random moments while
events and changes flow; after a restart every table, bronze included, is exactly what the
oracle says: nothing missing, nothing doubled; and reconciliation agrees at rest, then notices
a row deleted from gold and one from silver.

The producers send a bounded number of records at a steady rate (so the test's cost does not
grow with how slowly the machine restarts Spark); each kill comes a random number of silver
rows into a run, or after the run's first new rows once the producers are done."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from streaming.config import Settings
from streaming.generator.customers import CustomerChanges
from streaming.generator.producer import Delivered, produce
from streaming.generator.shop import FaultRates, ShopSimulator
from streaming.kafka_client import end_offsets, ensure_topics
from streaming.reconcile import reconcile
from streaming.runner import run_streams
from streaming.tables import read_delta, read_table
from tests.gold_oracle import actual_gold, expected_gold
from tests.helpers import START, bronze_records, expected_records, wait_until
from tests.integration.test_silver_events import coordinates, oracle

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
KILLS = 3
EVENTS, EVENTS_PER_S = 600, 4.0  # flowing through three restarts
CHANGES, CHANGES_PER_S = 120, 0.8


def silver_rows(spark: SparkSession, settings: Settings) -> int:
    total = 0
    for name in ("silver.orders", "silver.payments", "silver.customers_changes"):
        table = read_table(spark, settings, name)
        total += table.count() if table is not None else 0
    return total


def bronze_rows(spark: SparkSession, settings: Settings) -> int:
    total = 0
    for source in settings.pipeline.sources:
        table = read_delta(spark, settings.table_path("bronze", source.table_name))
        total += table.count() if table is not None else 0
    return total


def test_sigkill_of_the_pipeline_changes_no_result(
    spark: SparkSession, shop: Settings, tmp_path: Path
) -> None:
    rng = random.Random(7)
    orders, payments, customers = (s.topic for s in shop.pipeline.sources)
    ensure_topics(shop.profile.kafka, shop.pipeline.sources)
    events: list[Delivered] = []
    changes: list[Delivered] = []
    stop = threading.Event()
    feeds = [
        (
            ShopSimulator(
                51,
                START,
                faults=FaultRates.parse("all"),
                orders_topic=orders,
                payments_topic=payments,
            ),
            events,
            EVENTS,
            EVENTS_PER_S,
        ),
        (
            CustomerChanges(
                51,
                START,
                faults=FaultRates.parse("duplicates,out_of_order"),
                initial=100,
                topic=customers,
            ),
            changes,
            CHANGES,
            CHANGES_PER_S,
        ),
    ]
    producers = [
        threading.Thread(
            target=lambda f=feed: f[1].extend(
                produce(
                    shop.profile.kafka,
                    f[0],
                    count=f[2],
                    rate=f[3],
                    stop=stop,
                    keep_deliveries=True,
                ).deliveries
            )
        )
        for feed in feeds
    ]
    for p in producers:
        p.start()
    log = tmp_path / "pipeline.log"
    try:
        for kill in range(KILLS):
            # The early kills come while bronze writes (silver may not have started), the
            # last once silver has written: together they hit every layer's start and batches.
            layer_rows = bronze_rows if kill < KILLS - 1 else silver_rows
            before = layer_rows(spark, shop)
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "streaming.cli",
                        "--conf",
                        str(shop.conf_dir),
                        "stream",
                        "all",
                    ],
                    cwd=REPO,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            target = before + rng.randint(1, 300)

            def kill_now(
                p: subprocess.Popen[bytes] = process,
                t: int = target,
                b: int = before,
                rows_of: Callable[[SparkSession, Settings], int] = layer_rows,
            ) -> bool:
                if p.poll() is not None:
                    return True
                rows = rows_of(spark, shop)
                producing = any(thread.is_alive() for thread in producers)
                return rows >= t or (not producing and rows > b)

            try:
                wait_until(
                    kill_now,
                    300,
                    f"{layer_rows.__name__} to pass {target} (kill {kill + 1})",
                    poll_s=2.0,
                )
                assert process.poll() is None, log.read_text()[-3000:]
            finally:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
    finally:
        stop.set()
        for p in producers:
            p.join(timeout=120)

    run_streams(spark, shop, available_now=True)  # the restart, caught up

    found = bronze_records(spark, shop)
    expected = expected_records(events + changes)
    assert not expected - found, f"{(expected - found).total()} records missing from bronze"
    assert not {k: n for k, n in found.items() if n > 1}, "records doubled in bronze"
    assert found == expected
    expected_silver, expected_quarantine, expected_duplicates = oracle(events, orders)
    silver = coordinates(spark, shop.table_path("silver", "orders"), "event_id")
    silver += coordinates(spark, shop.table_path("silver", "payments"), "event_id")
    assert silver == {(*k, v): 1 for k, v in expected_silver.items()}
    quarantined = coordinates(spark, shop.table_path("quarantine", f"{orders.replace('.', '_')}"))
    quarantined += coordinates(
        spark, shop.table_path("quarantine", f"{payments.replace('.', '_')}")
    )
    assert quarantined == {k: 1 for k in expected_quarantine}
    duplicates = coordinates(spark, shop.table_path("duplicates", f"{orders.replace('.', '_')}"))
    duplicates += coordinates(spark, shop.table_path("duplicates", f"{payments.replace('.', '_')}"))
    assert duplicates == {k: 1 for k in expected_duplicates}
    revenue, by_customer = actual_gold(spark, shop)
    assert (revenue, by_customer) == expected_gold(events, changes, orders)

    # Reconciliation agrees at rest, and notices a row gone missing from gold or silver.
    kafka = {
        s.topic: sum(end_offsets(shop.profile.kafka, s.topic).values())
        for s in shop.pipeline.sources
    }
    result = reconcile(spark, shop, kafka)
    assert result.ok, "\n".join(result.lines())
    assert {t.topic: t.bronze for t in result.topics} == dict(
        Counter(d.topic for d in events + changes)
    )
    assert {g.table for g in result.gold} == {"revenue_per_minute", "customer_orders"}
    DeltaTable.forPath(spark, shop.table_path("gold", "customer_orders")).delete(
        f"customer_id = '{sorted(by_customer)[0]}'"
    )
    broken = reconcile(spark, shop, kafka)
    assert not broken.ok and all(t.ok for t in broken.topics)
    assert {g.table: (g.extra, g.missing) for g in broken.gold}["customer_orders"] == (0, 1)
    _, partition, offset = min(where for where in expected_silver if where[0] == orders)
    DeltaTable.forPath(spark, shop.table_path("silver", "orders")).delete(
        f"kafka_partition = {partition} AND kafka_offset = {offset}"
    )
    broken = reconcile(spark, shop, kafka)
    orders_counts = next(t for t in broken.topics if t.topic == orders)
    assert orders_counts.unaccounted == 1 and not orders_counts.ok
