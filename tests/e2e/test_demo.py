"""The README's demo as a user runs it: broker, PostgreSQL, Kafka Connect with Debezium, the
generators, every stream and the Dagster UI in the foreground; a change in PostgreSQL reaches
gold; Ctrl-C leaves nothing running. (DEMO_SECONDS: tests/unit/test_cli_errors.py.)"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from streaming.config import Settings, load_settings
from streaming.generator.customers import COUNTRIES
from streaming.generator.producer import produce
from streaming.generator.shop import ShopSimulator
from streaming.services.kafka_broker import port_in_use
from streaming.services.postgres import connect
from streaming.tables import read_delta, read_table
from tests.conftest import connect_block, free_port, write_conf
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SHOP = ["shop.orders", "shop.payments", "shop.public.customers"]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Settings]:
    """The demo's own conf on free ports: broker, Dagster UI, and the CDC path (a PostgreSQL
    cluster of its own and a Kafka Connect worker running Debezium), with the shop's gold
    tables and connector. Its state lives outside pytest's private temp folder: PostgreSQL
    runs as the `postgres` user when the tests run as root."""
    root = Path(tempfile.mkdtemp(prefix="headwater-demo-"))
    root.chmod(0o711)
    settings = write_conf(
        root,
        topics=SHOP,
        kafka_port=free_port(),
        controller_port=free_port(),
        profile={
            # Not 3000, 5433 and 8083: someone's own services may be there.
            "dagster_ui": {"port": free_port()},
            "postgres": {"port": free_port()},
            "local_postgres": {"schema_file": str(REPO / "infra/postgres/shop.sql")},
            "kafka_connect": connect_block(free_port()),
        },
    )
    for folder in ("gold", "connectors"):
        shutil.copytree(REPO / "conf" / folder, settings.conf_dir / folder)
    try:
        yield load_settings(settings.conf_dir, "local", environ={})
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ui_answers(settings: Settings) -> bool:
    url = f"http://127.0.0.1:{settings.profile.dagster_ui.port}/server_info"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_demo(
    settings: Settings, log: Path, env: dict[str, str] | None = None, *options: str
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streaming.cli",
                "--conf",
                str(settings.conf_dir),
                "demo",
                "--rate",
                "60",
                *options,
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )


def assert_nothing_left(settings: Settings, group: int) -> None:
    local, pg, connect_worker = (
        settings.profile.local_kafka,
        settings.profile.postgres,
        settings.profile.kafka_connect,
    )
    assert local is not None and pg is not None and connect_worker is not None
    assert not port_in_use(local.port) and not port_in_use(local.controller_port), "broker stopped"
    assert not port_in_use(pg.port), "PostgreSQL stopped"
    assert not port_in_use(connect_worker.port), "Kafka Connect stopped"
    assert not (settings.state_dir / "kafka" / "broker.pid").exists()
    assert not port_in_use(settings.profile.dagster_ui.port), "the Dagster UI stopped"
    # Spark's JVM exits when its Python driver does (stdin closes): give it a moment.
    wait_until(lambda: not _group_alive(group), 30, "every process of the demo to exit")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def gold_country(spark: SparkSession, settings: Settings, customer_id: str) -> str | None:
    table = read_delta(spark, settings.table_path("gold", "customer_orders"))
    if table is None:
        return None
    row = table.where(table.customer_id == customer_id).select("country").first()
    return None if row is None else row.country


def quarantined(spark: SparkSession, settings: Settings, customer_id: str) -> list[list[str]]:
    """The reasons of each quarantined change of `customer_id` (Debezium's key names it)."""
    table = read_table(spark, settings, "quarantine.shop_public_customers")
    if table is None:
        return []
    mine = table.where(table.key.cast("string").contains(f'"{customer_id}"'))
    return [list(r.reasons) for r in mine.select("reasons").collect()]


def test_demo_runs_every_part_a_postgres_change_reaches_gold_and_ctrl_c_stops_it_all(
    spark: SparkSession, demo: Settings
) -> None:
    settings = demo
    log = settings.state_dir.parent / "demo.log"
    started = time.monotonic()
    process = start_demo(settings, log)
    path = settings.table_path("bronze", "shop_orders")
    seen: dict[str, float] = {}  # what was seen, seconds after the demo started

    def demo_up() -> bool:
        if "ui" not in seen and ui_answers(settings):
            seen["ui"] = time.monotonic() - started
        if "bronze" not in seen and (t := read_delta(spark, path)) is not None and t.count() > 0:
            seen["bronze"] = time.monotonic() - started
        return process.poll() is not None or len(seen) == 2

    try:
        wait_until(demo_up, 300, "bronze.shop_orders rows and the Dagster UI", poll_s=1.0)
        assert process.poll() is None, log.read_text()[-4000:]
        print(
            f"first bronze rows {seen['bronze']:.0f} s and the Dagster UI answering "
            f"{seen['ui']:.0f} s after `headwater demo` started"
        )
        output = log.read_text()
        assert "connector shop-postgres: RUNNING" in output, output[-3000:]
        url = f"http://127.0.0.1:{settings.profile.dagster_ui.port}"
        wait_until(
            lambda: f"dagster: UI at {url}" in log.read_text(), 30, "the demo to print the UI's URL"
        )
        dagster_log = settings.state_dir / "dagster" / "dagster-dev.log"
        assert "Serving dagster-webserver" in dagster_log.read_text()
        # The demo runs the streams itself: the UI's supervisor observes them and starts no
        # continuous run of its own.
        observed = "Sensor headwater_continuous_supervisor skipped: the pipeline is run outside"
        wait_until(
            lambda: observed in dagster_log.read_text(),
            120,
            "the supervisor sensor's first tick",
        )
        assert "headwater demo" in dagster_log.read_text().split(observed, 1)[1].split("\n")[0]
        instance = dg.DagsterInstance.from_config(str(settings.state_dir / "dagster"))
        try:
            assert instance.get_runs() == [], "the demo's Dagster started no run"
        finally:
            instance.dispose()

        # A customer of our own (the demo's workload never touches it) with a few orders;
        # then a change of country in PostgreSQL reaches gold.customer_orders.
        customer, (before, after) = "C99999", random.Random(3).sample(COUNTRIES, 2)
        with connect(settings, "user") as db:
            db.execute(
                "INSERT INTO public.customers (customer_id, name, email, country, segment, "
                "updated_at) VALUES (%s, 'Demo Tester', 'tester@example.com', %s, 'vip', now())",
                [customer, before],
            )
            db.commit()
            shop = ShopSimulator(9, datetime.now(UTC))
            shop.customers = [customer]
            produce(settings.profile.kafka, shop, count=6)
            wait_until(
                lambda: gold_country(spark, settings, customer) == before,
                300,
                f"gold.customer_orders to show {customer} in {before}",
                poll_s=1.0,
            )
            db.execute(
                "UPDATE public.customers SET country = %s, updated_at = now() "
                "WHERE customer_id = %s",
                [after, customer],
            )
            db.commit()
            committed = time.monotonic()
            wait_until(
                lambda: gold_country(spark, settings, customer) == after,
                300,
                f"the change of country of {customer} to reach gold.customer_orders",
                poll_s=0.5,
            )
            latency = time.monotonic() - committed

            # A column added in PostgreSQL while everything runs: the shop's contract does not
            # name it (additionalProperties: false), so the change is quarantined, saying which.
            db.execute("ALTER TABLE public.customers ADD COLUMN loyalty_tier text")
            db.execute(
                "UPDATE public.customers SET loyalty_tier = 'gold', segment = 'business', "
                "updated_at = now() WHERE customer_id = %s",
                [customer],
            )
            db.commit()
            wait_until(
                lambda: quarantined(spark, settings, customer),
                300,
                f"the change of {customer} with a new column to reach quarantine",
                poll_s=1.0,
            )
        [reasons] = quarantined(spark, settings, customer)
        assert reasons == [
            "fields not in the contract (additionalProperties: false): loyalty_tier; add them "
            "to the contract's properties, then rebuild from bronze"
        ]
        silver = read_table(spark, settings, "silver.customers")
        assert silver is not None
        [kept] = silver.where(f"customer_id = '{customer}'").collect()
        assert (kept.country, kept.segment) == (after, "vip"), (
            "the quarantined change is not applied"
        )
        print(
            f"a change of country committed in PostgreSQL was in gold.customer_orders "
            f"{latency:.1f} s later"
        )
        assert process.poll() is None, log.read_text()[-4000:]
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert process.wait(timeout=180) == 0, log.read_text()[-4000:]
    output = log.read_text()
    assert "received SIGINT: stopping the streams" in output
    for stopped in ("dagster: UI", "connect:", "postgres:", "kafka:"):
        assert re.search(rf"^{stopped} stopped", output, re.MULTILINE), f"{stopped} stopped"
    # Its summary: every table's rows, as the tables hold them at rest.
    for table in (
        "bronze.shop_orders",
        "silver.orders",
        "quarantine.shop_orders",
        "duplicates.shop_orders",
        "silver.customers",
        "gold.customer_orders",
    ):
        found = re.search(rf"^{re.escape(table)}: ([\d,]+) rows", output, re.MULTILINE)
        assert found, f"{table} is reported"
        rows = read_table(spark, settings, table)
        assert rows is not None and rows.count() == int(found.group(1).replace(",", ""))
    assert re.search(r"^generator \(customers in postgres\): ", output, re.MULTILINE)
    assert_nothing_left(settings, process.pid)
