"""SIGKILL the whole pipeline (every layer in one Spark application) at random moments while
events and changes flow; after a restart every table, bronze included, is exactly what the
oracle says: nothing missing, nothing doubled; and reconciliation agrees at rest, then notices
a row deleted from gold and one from silver.

The producers send at a steady rate until the last kill (at most EVENTS and CHANGES records),
so every kill comes while records flow; each comes a random number of rows into a run."""

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

from devstack.generator.customers import CustomerChanges
from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates, ShopSimulator
from streaming.config import Settings
from streaming.gold.definitions import load_gold_tables
from streaming.kafka_client import end_offsets, ensure_topics
from streaming.reconcile import reconcile, reconcile_gold, reconcile_topic
from streaming.runner import run_streams
from tests.conftest import TOPOLOGIES
from tests.gold_oracle import actual_gold, expected_gold
from tests.helpers import (
    START,
    bronze_records,
    bronze_rows,
    expected_records,
    table_rows,
    wait_until,
)
from tests.integration.test_silver_events import coordinates, oracle

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
KILLS = 3
# Caps, not targets: the producers stop at the last kill (three restarts take minutes here).
EVENTS, EVENTS_PER_S = 2400, 4.0
CHANGES, CHANGES_PER_S = 480, 0.8
KILL_WITHIN_ROWS = 100  # each kill comes 1..100 rows of its layer into a run


def silver_rows(settings: Settings) -> int:
    return table_rows(settings, "silver.orders", "silver.payments", "silver.customers_changes")


@pytest.mark.parametrize("topology", TOPOLOGIES)
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
    flowing_at_kill: list[bool] = []
    try:
        for kill in range(KILLS):
            # The early kills come while bronze writes (silver may not have started), the
            # last once silver has written: together they hit every layer's start and batches.
            layer_rows = bronze_rows if kill < KILLS - 1 else silver_rows
            before = layer_rows(shop)
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "devstack.cli",
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
            target = before + rng.randint(1, KILL_WITHIN_ROWS)

            def kill_now(
                p: subprocess.Popen[bytes] = process,
                t: int = target,
                b: int = before,
                rows_of: Callable[[Settings], int] = layer_rows,
            ) -> bool:
                if p.poll() is not None:
                    return True
                rows = rows_of(shop)
                producing = any(thread.is_alive() for thread in producers)
                return rows >= t or (not producing and rows > b)

            try:
                wait_until(
                    kill_now,
                    300,
                    f"{layer_rows.__name__} to pass {target} (kill {kill + 1})",
                    poll_s=0.2,
                )
                assert process.poll() is None, log.read_text()[-3000:]
            finally:
                flowing_at_kill.append(all(thread.is_alive() for thread in producers))
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
    finally:
        stop.set()
        for p in producers:
            p.join(timeout=120)

    assert flowing_at_kill == [True] * KILLS, "a kill came after the producers had stopped"
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
    # Each check on its own notices a row gone missing: one from gold, one from silver.
    customer_orders = next(t for t in load_gold_tables(shop) if t.name == "customer_orders")
    DeltaTable.forPath(spark, shop.table_path("gold", "customer_orders")).delete(
        f"customer_id = '{sorted(by_customer)[0]}'"
    )
    broken_gold = reconcile_gold(spark, shop, customer_orders)
    assert broken_gold is not None and (broken_gold.extra, broken_gold.missing) == (0, 1)
    _, partition, offset = min(where for where in expected_silver if where[0] == orders)
    DeltaTable.forPath(spark, shop.table_path("silver", "orders")).delete(
        f"kafka_partition = {partition} AND kafka_offset = {offset}"
    )
    orders_source = next(s for s in shop.pipeline.sources if s.topic == orders)
    orders_counts = reconcile_topic(spark, shop, orders_source, kafka[orders])
    assert orders_counts.unaccounted == 1 and not orders_counts.ok
