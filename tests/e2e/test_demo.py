"""The README's demo as a user runs it: broker, generator, streams and the Dagster UI in the
foreground; Ctrl-C leaves nothing running, and its summary is what the tables hold.
(DEMO_SECONDS: tests/unit/test_cli_errors.py. The CDC path from PostgreSQL through Debezium to
gold, running: tests/integration/test_debezium_cdc.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import yaml
from playwright.sync_api import Page, expect
from pyspark.sql import SparkSession

from devstack.services.kafka_broker import port_in_use
from devstack.services.ports import free_ports
from orchestration.defs.quality.checks import QUALITY_JOB
from streaming.catalog import pipeline_tables
from streaming.config import Settings, load_settings
from streaming.delta_log import live_rows
from streaming.tables import read_table
from tests.conftest import write_conf
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
REPO = Path(__file__).resolve().parents[2]
SHOP = ["shop.orders", "shop.payments", "shop.public.customers"]
# Issue 26: what the UI shows must be true within the demo's first three minutes.
UI_TRUE_WITHIN_S = 180.0
LATEST = re.compile(r"Latest materialization\s*(\d+|an?|a few) (seconds?|minutes?) ago")
FRESH = re.compile(r"Freshness policy\s*Passing")
# A check of the list with a result (the list names each check twice: title and key).
CHECKED = re.compile(
    r"(?:(?:expectations_error|reconciliation|freshness)\s*){2}(?:Succeeded|Failed|Warning)"
)


def demo_settings(tmp_path: Path) -> Settings:
    kafka, controller, ui = free_ports(3)
    settings = write_conf(tmp_path, topics=SHOP, kafka_port=kafka, controller_port=controller)
    gold = settings.conf_dir / "gold"
    gold.mkdir()
    for declaration in sorted((REPO / "conf" / "gold").glob("*.yaml")):
        (gold / declaration.name).write_text(declaration.read_text())
    # The demo's Dagster UI on a free port, not 3000 (someone's own UI may be there).
    profile = settings.conf_dir / "profiles" / "local.yaml"
    doc = yaml.safe_load(profile.read_text())
    doc["dagster_ui"] = {"port": ui}
    profile.write_text(yaml.safe_dump(doc))
    return load_settings(settings.conf_dir, "local", environ={})


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
                "devstack.cli",
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
    local = settings.profile.local_kafka
    assert local is not None
    assert not port_in_use(local.port) and not port_in_use(local.controller_port), "broker stopped"
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


def test_demo_with_its_ui_reports_its_tables_and_ctrl_c_stops_everything(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The demo runs, its Dagster UI tells the truth about the tables within three minutes
    (the browser part: assert_the_ui_shows_the_streams), Ctrl-C stops everything and the
    summary is what the tables hold."""
    settings = demo_settings(tmp_path)
    log = tmp_path / "demo.log"
    started = time.monotonic()
    process = start_demo(settings, log)
    path = settings.table_path("bronze", "shop_orders")
    seen: dict[str, float] = {}  # what was seen, seconds after the demo started

    def demo_up() -> bool:
        if "ui" not in seen and ui_answers(settings):
            seen["ui"] = time.monotonic() - started
        if "bronze" not in seen and (live_rows(path) or 0) > 0:
            seen["bronze"] = time.monotonic() - started
        return process.poll() is not None or len(seen) == 2

    try:
        wait_until(demo_up, 300, "bronze.shop_orders rows and the Dagster UI", poll_s=1.0)
        assert process.poll() is None, log.read_text()[-4000:]
        print(
            f"first bronze rows {seen['bronze']:.0f} s and the Dagster UI answering "
            f"{seen['ui']:.0f} s after `headwater demo` started"
        )
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
            # Only the quality checks run on their cadence (headwater_quality_cadence).
            jobs = {r.job_name for r in instance.get_runs()}
            assert jobs <= {QUALITY_JOB}, f"the demo's Dagster started no pipeline run: {jobs}"
        finally:
            instance.dispose()
        assert_the_ui_shows_the_streams(settings, url, started, tmp_path / "chromium")
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert process.wait(timeout=180) == 0, log.read_text()[-4000:]
    output = log.read_text()
    assert "received SIGINT: stopping the streams" in output
    assert "dagster: UI stopped" in output
    assert "kafka: stopped (the demo started it)" in output
    # Its summary: every table's rows, as the tables hold them at rest.
    reported: dict[str, int] = {}
    for table in (
        "bronze.shop_orders",
        "silver.orders",
        "quarantine.shop_orders",
        "duplicates.shop_orders",
        "silver.customers",
    ):
        found = re.search(rf"^{re.escape(table)}: ([\d,]+) rows", output, re.MULTILINE)
        assert found, f"{table} is reported"
        reported[table] = int(found.group(1).replace(",", ""))
        rows = read_table(spark, settings, table)
        assert rows is not None and rows.count() == reported[table]
    assert reported["bronze.shop_orders"] > 0
    assert_nothing_left(settings, process.pid)


def assert_the_ui_shows_the_streams(
    settings: Settings, url: str, started: float, profile: Path
) -> None:
    """Within the demo's first three minutes, in headless Chromium: the Catalog lists every
    bronze, silver and gold table as materialized (the streams' commits, reported without a
    run), each one's page says when it was last materialized, each gold table's freshness
    policy is passing, and silver.orders shows a result of its checks (the quality cadence's
    first run)."""
    from tests.browser.chromium import chromium, open_page, screenshot

    tables = [t for t in pipeline_tables(settings) if t.layer in ("bronze", "silver", "gold")]
    assert {t.layer for t in tables} == {"bronze", "silver", "gold"}, tables

    def left_ms() -> float:
        return max(UI_TRUE_WITHIN_S - (time.monotonic() - started), 1.0) * 1000

    with chromium(profile, height=2400) as browser:  # every row drawn
        catalog = open_page(browser, f"{url}/assets?view=flat", left_ms())
        labels = {f"{t.layer} / {t.name}" for t in tables}
        # Every row's status, reloaded until each table shows a materialization.
        while True:
            expect(catalog.get_by_text(sorted(labels)[0], exact=True).first).to_be_visible(
                timeout=left_ms()
            )
            status = catalog_statuses(catalog.inner_text("body"))
            never = sorted(
                label for label in labels if "Never materialized" in status.get(label, "Never")
            )
            if not never:
                break
            assert left_ms() > 1000, f"never materialized in the Catalog: {never} ({status})"
            catalog.reload()
        screenshot(catalog, "demo-catalog")
        print(f"catalog: every table materialized {time.monotonic() - started:.0f} s in")
        for table in tables:
            page = open_page(browser, f"{url}/assets/{table.layer}/{table.name}", left_ms())
            shown_after_reloads(page, LATEST, left_ms)
            if table.layer == "gold":
                shown_after_reloads(page, FRESH, left_ms)
                screenshot(page, f"demo-{table.layer}-{table.name}")
            page.close()
        checks = open_page(browser, f"{url}/assets/silver/orders?view=checks", left_ms())
        shown_after_reloads(checks, CHECKED, left_ms)
        screenshot(checks, "demo-silver-orders-checks")
    print(f"the UI told the truth {time.monotonic() - started:.0f} s after the demo started")


def catalog_statuses(text: str) -> dict[str, str]:
    """Each asset row of the Catalog's flat view (its text, as the browser shows it): the
    asset's label ('silver / orders') -> the rest of its row, status included."""
    label = re.compile(r"^[a-z_]+ / [a-z0-9_]+$")
    rows: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if label.match(line) and line != current:
            current = line
            rows[current] = ""
        elif current is not None:
            rows[current] += line + "\n"
    return rows


def shown_after_reloads(page: Page, pattern: re.Pattern[str], left_ms: Callable[[], float]) -> None:
    """Wait for `pattern` in the page's text, reloading it now and then: a page shows what the
    instance held when it loaded, and not every panel of it polls."""
    body = page.locator("body")
    while True:
        try:
            expect(body).to_contain_text(pattern, timeout=min(15_000, left_ms()))
            return
        except AssertionError:
            if left_ms() <= 1000:
                raise
            page.reload()
