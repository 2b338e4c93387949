"""SIGKILL the whole pipeline (every layer in one Spark application) at random moments while
events and changes flow; after a restart every table is exactly what the oracle says."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from streaming.config import Settings
from streaming.generator.customers import CustomerChanges
from streaming.generator.producer import Delivered, produce
from streaming.generator.shop import FaultRates, ShopSimulator
from streaming.kafka_client import ensure_topics
from streaming.runner import run_streams
from streaming.tables import read_table
from tests.e2e.test_pipeline_exact import actual_gold, expected_gold
from tests.helpers import START, wait_until
from tests.integration.test_silver_events import coordinates, oracle

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
KILLS = 3


def silver_rows(spark: SparkSession, settings: Settings) -> int:
    total = 0
    for name in ("silver.orders", "silver.payments", "silver.customers_changes"):
        table = read_table(spark, settings, name)
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
            60.0,
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
            10.0,
        ),
    ]
    producers = [
        threading.Thread(
            target=lambda f=feed: f[1].extend(
                produce(
                    shop.profile.kafka, f[0], rate=f[2], stop=stop, keep_deliveries=True
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
            before = silver_rows(spark, shop)
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
            target = before + rng.randint(50, 400)
            try:
                wait_until(
                    lambda p=process, t=target: (
                        p.poll() is not None or silver_rows(spark, shop) >= t
                    ),
                    300,
                    f"silver to pass {target} rows (kill {kill + 1})",
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
    assert actual_gold(spark, shop) == expected_gold(events, changes, orders)
