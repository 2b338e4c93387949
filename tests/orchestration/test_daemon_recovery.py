"""Issue 26, under the real daemon: `dagster dev` (webserver and daemon) runs the project's
code location on this test's conf, and its supervisor starts the continuous pipeline. Then
every Dagster process and the pipeline are SIGKILLed while events flow, and Dagster is started
again: the supervisor replaces the dead run at its first or second tick (it does not wait for
`stuck_after_seconds`), while the maintenance schedule fires every minute and is not taken
for the pipeline. Nothing is lost or doubled. Then the events stop: the tables' Dagster
freshness policies turn to failing within their window and the supervisor posts an alert.

(The sensor's decisions, one tick at a time: tests/unit/test_supervisor_decide.py and
tests/orchestration/test_supervision.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState
from pyspark.sql import SparkSession

from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates, ShopSimulator
from devstack.services.dagster_ui import DagsterUi
from devstack.services.ports import free_port
from orchestration.pipes_pipeline import OWNER_PREFIX
from streaming.config import DagsterUiSettings, Settings
from streaming.kafka_client import ensure_topics
from streaming.locks import Holder, holder
from tests.conftest import write_conf
from tests.helpers import START, bronze_rows, wait_until
from tests.orchestration.test_supervision import assert_exact, landed, process_tree

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
TICK_S = 5  # orchestration.supervisor_interval_seconds of this test
SLA_MIN = 1.0  # every table's freshness SLA: Dagster's shortest policy window
START_S = 600.0  # Dagster and a Spark driver starting on a busy 2-core machine
DAEMON_UP = "Instance is configured with the following daemons"
TICK_LINE = re.compile(r"headwater supervisor: (\w+): (.*)")


class Webhook:
    """A local HTTP endpoint that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def daemon_conf(broker: Settings, root: Path, unique: str) -> Settings:
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    assert broker.profile.local_kafka is not None
    return write_conf(
        root,
        topics=[f"t{unique}.orders", f"t{unique}.payments"],
        kafka_port=port,
        controller_port=broker.profile.local_kafka.controller_port,
        pipeline={
            "orchestration": {
                "default_mode": "continuous",
                "supervisor_interval_seconds": TICK_S,
                "freshness": {"default_minutes": SLA_MIN},
            },
            # The maintenance schedule fires every minute: during the restart too.
            "maintenance": {"enabled": True, "cron": "* * * * *"},
        },
    )


def dagster_dev(settings: Settings, home: Path, hook: Webhook) -> DagsterUi:
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "HEADWATER_CONF": str(settings.conf_dir),
        "HEADWATER_PROFILE": "local",
        "HEADWATER_ALERT_WEBHOOK": hook.url,
    }
    command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
    return DagsterUi(
        DagsterUiSettings(port=port),
        home,
        env,
        cwd=REPO,
        command=[*command, "-m", "orchestration.definitions"],
    )


def pipeline_holder(settings: Settings) -> Holder | None:
    """The live process of a Dagster continuous run holding every stream, else None."""
    holders = [
        holder(settings, f"{layer}:{s.topic}")
        for s in settings.pipeline.sources
        for layer in ("bronze", "silver")
    ]
    if not all(h is not None and h.owner.startswith(OWNER_PREFIX) for h in holders):
        return None
    pids = {h.pid for h in holders if h is not None}
    first = holders[0]
    if len(pids) != 1 or first is None or not _alive(first.pid):
        return None
    return first


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_everything(ui: DagsterUi, pipeline: Holder) -> None:
    """SIGKILL every Dagster process (webserver, daemon, code servers, run workers) and the
    pipeline with its JVM: nothing gets to clean up."""
    assert ui.process is not None
    victims = [*process_tree(ui.process.pid), *process_tree(pipeline.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ui.process.wait(timeout=60)
    wait_until(lambda: not any(_alive(p) for p in victims), 60, "the killed processes to go")
    ui.process = None


def supervisor_ticks(ui: DagsterUi) -> list[tuple[str, str]]:
    """(action, reason) of each supervisor tick in this `dagster dev`'s log, in order."""
    text = ui.log_file.read_text(errors="replace")
    return [(m.group(1), m.group(2)) for m in TICK_LINE.finditer(text)]


def test_dagster_killed_and_restarted_replaces_the_dead_run_at_once_and_stale_tables_alert(
    spark: SparkSession, broker: Settings, tmp_path: Path, unique: str, webhook: Webhook
) -> None:
    settings = daemon_conf(broker, tmp_path, unique)
    home = tmp_path / "dagster"
    home.mkdir()
    orders, payments = (s.topic for s in settings.pipeline.sources)
    ensure_topics(settings.profile.kafka, settings.pipeline.sources)
    stop = threading.Event()
    sent: list[Delivered] = []
    simulator = ShopSimulator(
        26, START, faults=FaultRates.parse("all"), orders_topic=orders, payments_topic=payments
    )
    producer = threading.Thread(
        target=lambda: sent.extend(
            produce(
                settings.profile.kafka, simulator, rate=10.0, stop=stop, keep_deliveries=True
            ).deliveries
        )
    )
    producer.start()
    first = dagster_dev(settings, home, webhook)
    second: DagsterUi | None = None
    survivor: Holder | None = None
    try:
        first.start()
        wait_until(
            lambda: pipeline_holder(settings) is not None and bronze_rows(settings) > 0,
            START_S,
            "the supervisor's continuous run to hold every stream and write bronze",
        )
        old = pipeline_holder(settings)
        assert old is not None

        kill_everything(first, old)
        second = dagster_dev(settings, home, webhook)
        second.start()
        wait_until(
            lambda: DAEMON_UP in second.log_file.read_text(errors="replace"),
            START_S,
            "the daemon to start again",
        )
        daemon_up = time.monotonic()
        wait_until(
            lambda: len(supervisor_ticks(second)) >= 2,
            START_S,
            "two supervisor ticks after the restart",
        )
        first_two = supervisor_ticks(second)[:2]
        print(f"the supervisor's first ticks after the restart: {first_two}")
        assert any(action in ("start", "restart", "replace_stuck") for action, _ in first_two), (
            first_two
        )
        # Neither tick waits on the dead run (the new run may rightly be "starting").
        dead = re.search(r"continuous run (\S+) is dead", " ".join(w for _, w in first_two))
        assert dead is not None, first_two
        assert not any(f"{dead.group(1)} is starting" in why for _, why in first_two), first_two

        wait_until(
            lambda: (h := pipeline_holder(settings)) is not None and h.pid != old.pid,
            START_S,
            "a new pipeline to hold every stream",
        )
        survivor = pipeline_holder(settings)
        print(
            f"a new pipeline held every stream {time.monotonic() - daemon_up:.0f} s after the "
            "daemon started again"
        )
        # The maintenance schedule fires meanwhile; the supervisor tells its run from the
        # pipeline's and keeps the pipeline.
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            wait_until(
                lambda: any(r.job_name == "maintain_tables" for r in instance.get_runs(limit=20)),
                150,
                "the maintenance schedule to fire",
            )
        finally:
            instance.dispose()
        ticks_now = len(supervisor_ticks(second))
        wait_until(
            lambda: len(supervisor_ticks(second)) >= ticks_now + 2,
            120,
            "two more supervisor ticks",
        )
        later = supervisor_ticks(second)[ticks_now:]
        assert not any("another Dagster job" in why for _, why in later), later
        assert pipeline_holder(settings) is not None and survivor is not None
        assert pipeline_holder(settings).pid == survivor.pid  # type: ignore[union-attr]

        # The events stop: every event lands once, then the tables go stale.
        stop.set()
        producer.join(timeout=120)
        wait_until(
            lambda: bronze_rows(settings) == len(sent) and landed(settings) == len(sent),
            START_S,
            "the new pipeline to catch up with every event",
        )
        assert_exact(spark, settings, sent)
        quiet_since = time.monotonic()
        silver_orders = dg.AssetKey(["silver", "orders"])
        instance = dg.DagsterInstance.from_config(str(home))
        try:

            def policy_failing() -> bool:
                records = instance.get_freshness_state_records([silver_orders])
                record = records.get(silver_orders)
                return record is not None and record.freshness_state == FreshnessState.FAIL

            wait_until(
                policy_failing,
                SLA_MIN * 60 + 120,
                "silver.orders's freshness policy to fail",
                poll_s=2.0,
            )
        finally:
            instance.dispose()
        wait_until(
            lambda: any(
                "silver.orders" in a["summary"] and "breaches" in a["summary"]
                for a in webhook.received
            ),
            60,
            "the supervisor's alert that silver.orders is stale",
        )
        print(
            f"silver.orders failing and alerted {time.monotonic() - quiet_since:.0f} s after "
            f"the events stopped (SLA {SLA_MIN:g} min)"
        )
    finally:
        stop.set()
        producer.join(timeout=120)
        for ui in (first, second):
            if ui is not None:
                ui.stop()
        running = pipeline_holder(settings)
        if running is not None:
            for pid in process_tree(running.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
