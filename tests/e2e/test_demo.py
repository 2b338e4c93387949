"""The README's demo as a user runs it: broker, generator and bronze streams in the
foreground; bounded by DEMO_SECONDS, or stopped by Ctrl-C, it leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from streaming.config import Settings
from streaming.services.kafka_broker import port_in_use
from streaming.tables import read_delta
from tests.conftest import free_port, write_conf
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SHOP = ["shop.orders", "shop.payments", "shop.public.customers"]


def demo_settings(tmp_path: Path) -> Settings:
    return write_conf(tmp_path, topics=SHOP, kafka_port=free_port(), controller_port=free_port())


def start_demo(
    settings: Settings, log: Path, env: dict[str, str] | None = None
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
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )


def assert_nothing_left(settings: Settings, group: int) -> None:
    local = settings.profile.local_kafka
    assert local is not None
    assert not port_in_use(local.port) and not port_in_use(local.controller_port), "broker stopped"
    assert not (settings.state_dir / "kafka" / "broker.pid").exists()
    # Spark's JVM exits when its Python driver does (stdin closes): give it a moment.
    wait_until(lambda: not _group_alive(group), 30, "every process of the demo to exit")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_bounded_by_demo_seconds(spark: SparkSession, tmp_path: Path) -> None:
    settings = demo_settings(tmp_path)
    log = tmp_path / "demo.log"
    process = start_demo(settings, log, {"DEMO_SECONDS": "40"})
    assert process.wait(timeout=300) == 0, log.read_text()[-4000:]
    output = log.read_text()
    found = re.search(r"bronze\.shop_orders: ([\d,]+) rows", output)
    assert found, output[-3000:]
    reported = int(found.group(1).replace(",", ""))
    assert reported > 0
    table = read_delta(spark, settings.table_path("bronze", "shop_orders"))
    assert table is not None and table.count() == reported
    assert "kafka: stopped (the demo started it)" in output
    for table in ("silver.orders", "quarantine.shop_orders", "duplicates.shop_orders"):
        assert re.search(rf"{re.escape(table)}: [\d,]+ rows", output), f"{table} is reported"
    assert_nothing_left(settings, process.pid)


def test_ctrl_c_stops_everything_the_demo_started(spark: SparkSession, tmp_path: Path) -> None:
    settings = demo_settings(tmp_path)
    log = tmp_path / "demo.log"
    started = time.monotonic()
    process = start_demo(settings, log)
    try:
        path = settings.table_path("bronze", "shop_orders")
        wait_until(
            lambda: (
                process.poll() is not None
                or ((t := read_delta(spark, path)) is not None and t.count() > 0)
            ),
            180,
            "bronze.shop_orders to hold rows",
            poll_s=1.0,
        )
        assert process.poll() is None, log.read_text()[-4000:]
        print(
            f"first bronze rows {time.monotonic() - started:.0f} s after `headwater demo` started"
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert process.wait(timeout=180) == 0, log.read_text()[-4000:]
    assert "received SIGINT: stopping the streams" in log.read_text()
    assert_nothing_left(settings, process.pid)
