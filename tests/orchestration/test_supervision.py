"""The continuous pipeline under Dagster, supervised: a real `headwater_continuous` run (a
`dagster job execute` process launching the Pipes pipeline) on a real broker, in a temporary
Dagster instance, started as the sensor asks when nothing runs. Killing the pipeline makes the
sensor request one restart with a reason; carried out, the restart loses and doubles nothing.
The batch mode meets the running pipeline's locks. (A pipeline run outside Dagster is only
observed: tests/e2e/test_demo.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates, ShopSimulator
from orchestration.defs.keys import table_key
from orchestration.defs.streams import CONTINUOUS_JOB, supervisor_sensor
from orchestration.defs.streams.continuous import RESTART_REASON_TAG
from streaming.catalog import pipeline_tables
from streaming.config import Settings
from streaming.delta_log import live_rows
from streaming.kafka_client import ensure_topics
from streaming.locks import Holder, StreamBusy, holder
from streaming.progress import read_heartbeats
from streaming.runner import query_names, run_streams
from tests.helpers import (
    START,
    bronze_records,
    bronze_rows,
    expected_records,
    produce_shop,
    table_rows,
    wait_until,
)
from tests.integration.test_silver_events import coordinates, oracle

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]
REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
START_S = 900.0  # a Spark driver starting on a busy 2-core machine, then catching up

LOCATION = """
import dagster as dg

from orchestration.defs.resources import HeadwaterResource
from orchestration.defs.streams import continuous_job, supervisor_sensor
from streaming.config import load_settings

settings = load_settings({conf!r}, "local")
defs = dg.Definitions(
    jobs=[continuous_job(settings)],
    sensors=[supervisor_sensor(settings)],
    resources={{"headwater": HeadwaterResource(conf_dir={conf!r}, profile="local")}},
)
"""

DAGSTER_YAML = """
telemetry:
  enabled: false
run_queue:
  tag_concurrency_limits:
    - key: "headwater/mode"
      value: "continuous"
      limit: 1
"""


class Dagster:
    """A temporary Dagster home with a code location holding the continuous job."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.home = root / "dagster_home"
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text(DAGSTER_YAML)
        self.location = root / "location.py"
        self.location.write_text(LOCATION.format(conf=str(settings.conf_dir)))
        self.instance = dg.DagsterInstance.from_config(str(self.home))
        self.logs = root
        self.launched = 0

    def execute(self, tags: dict[str, str]) -> subprocess.Popen[bytes]:
        """Carry out a run request as the daemon would: one headwater_continuous run."""
        self.launched += 1
        with (self.logs / f"run-{self.launched}.log").open("wb") as out:
            return subprocess.Popen(
                [
                    str(DAGSTER),
                    "job",
                    "execute",
                    "-f",
                    str(self.location),
                    "-j",
                    CONTINUOUS_JOB,
                    "--tags",
                    json.dumps(tags),
                ],
                cwd=REPO,
                env={**os.environ, "DAGSTER_HOME": str(self.home)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self) -> str:
        return (self.logs / f"run-{self.launched}.log").read_text(errors="replace")[-4000:]

    def runs(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(job_name=CONTINUOUS_JOB)))

    def tick(self, settings: Settings, cursor: str | None = None) -> Any:
        """One evaluation of the supervisor sensor against this instance."""
        sensor = supervisor_sensor(settings)
        with dg.build_sensor_context(instance=self.instance, cursor=cursor) as context:
            return sensor.evaluate_tick(context)


@pytest.fixture
def dagster(tmp_path: Path, pipeline: Settings) -> Iterator[Dagster]:
    d = Dagster(tmp_path, pipeline)
    yield d
    d.instance.dispose()


def stream_holders(settings: Settings) -> list[Holder | None]:
    return [
        holder(settings, f"{layer}:{s.topic}")
        for s in settings.pipeline.sources
        for layer in ("bronze", "silver")
    ]


def held_by_run(settings: Settings, run_id: str) -> Holder | None:
    """The holder of every stream when it is this Dagster run's process, else None."""
    holders = stream_holders(settings)
    if all(h is not None and run_id in h.owner for h in holders):
        return holders[0]
    return None


def the_started_run(d: Dagster, exclude: set[str]) -> str | None:
    fresh = [
        r for r in d.runs() if r.run_id not in exclude and r.status == dg.DagsterRunStatus.STARTED
    ]
    return fresh[0].run_id if fresh else None


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (the pipeline's Python driver and its JVM)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def landed(settings: Settings) -> int:
    """Rows of silver, quarantine and duplicates (from their Delta logs): every bronze event
    lands in exactly one."""
    return table_rows(
        settings,
        "silver.orders",
        "silver.payments",
        *(
            f"{layer}.{s.table_name}"
            for s in settings.pipeline.sources
            for layer in ("quarantine", "duplicates")
        ),
    )


def delta_logs(settings: Settings) -> dict[str, list[str]]:
    """Every table's and checkpoint's files: what a write would change."""
    out: dict[str, list[str]] = {}
    for root in (
        Path(settings.table_path("x", "x")).parent.parent,
        Path(settings.checkpoint_path("x", "x")).parent.parent,
    ):
        if root.exists():
            out[str(root)] = sorted(
                str(p.relative_to(root))
                for p in root.rglob("*")
                if "_delta_log" in p.parts or "offsets" in p.parts or "commits" in p.parts
            )
    return out


def assert_exact(spark: SparkSession, settings: Settings, sent: list[Delivered]) -> None:
    orders, payments = settings.pipeline.sources
    assert bronze_records(spark, settings) == expected_records(sent)
    expected_silver, expected_quarantine, expected_duplicates = oracle(sent, orders.topic)
    silver = coordinates(spark, settings.table_path("silver", "orders"), "event_id")
    silver += coordinates(spark, settings.table_path("silver", "payments"), "event_id")
    assert silver == Counter((*k, v) for k, v in expected_silver.items())
    quarantined = coordinates(spark, settings.table_path("quarantine", orders.table_name))
    quarantined += coordinates(spark, settings.table_path("quarantine", payments.table_name))
    assert quarantined == Counter(expected_quarantine)
    duplicates = coordinates(spark, settings.table_path("duplicates", orders.table_name))
    duplicates += coordinates(spark, settings.table_path("duplicates", payments.table_name))
    assert duplicates == Counter(expected_duplicates)


def stop_run(d: Dagster, process: subprocess.Popen[bytes], settings: Settings, run_id: str) -> None:
    """Stop a continuous run cleanly: SIGTERM to its pipeline process, which ends its batch."""
    h = held_by_run(settings, run_id)
    if h is not None:
        os.kill(h.pid, signal.SIGTERM)
    try:
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)


def test_a_killed_continuous_run_is_restarted_once_and_nothing_is_lost_or_doubled(
    spark: SparkSession, pipeline: Settings, dagster: Dagster
) -> None:
    orders, payments = (s.topic for s in pipeline.pipeline.sources)
    sent: list[Delivered] = produce_shop(pipeline, 200, seed=61, faults="all")
    # Nothing runs the streams yet: the supervisor asks for Dagster's own continuous run.
    # (A pipeline run outside Dagster is only observed: tests/e2e/test_demo.py.)
    [request] = dagster.tick(pipeline).run_requests
    assert request.run_key == "start:first"
    first = dagster.execute(dict(request.tags))
    processes = [first]
    try:
        run_ids: set[str] = set()
        wait_until(
            lambda: first.poll() is not None or the_started_run(dagster, run_ids) is not None,
            START_S,
            "the first continuous run to start",
        )
        assert first.poll() is None, dagster.log_tail()
        run_1 = the_started_run(dagster, run_ids)
        assert run_1 is not None
        run_ids.add(run_1)
        wait_until(
            lambda: (
                first.poll() is not None
                or (bronze_rows(pipeline) == len(sent) and landed(pipeline) == len(sent))
            ),
            START_S,
            "the continuous run to catch up with the first 200 records",
        )
        assert first.poll() is None, dagster.log_tail()
        # The rows land before the batch that wrote them ends and its progress (the
        # heartbeat the supervisor reads) is reported.
        bronze_query = query_names(pipeline)[f"bronze:{orders}"]
        wait_until(
            lambda: (
                (beat := read_heartbeats(pipeline).get(bronze_query)) is not None
                and beat.batch_timestamp is not None
            ),
            START_S,
            "the bronze stream's heartbeat to report its first batch",
        )

        # Healthy: the sensor observes every table and requests nothing.
        healthy = dagster.tick(pipeline)
        assert not healthy.run_requests
        assert "is healthy" in (healthy.skip_message or ""), healthy.skip_message
        observed = {e.asset_key for e in healthy.asset_events}
        assert dg.AssetKey(["bronze", pipeline.pipeline.sources[0].table_name]) in observed
        assert dg.AssetKey(["silver", "orders"]) in observed
        bronze_obs = next(
            e
            for e in healthy.asset_events
            if isinstance(e, dg.AssetObservation) and e.asset_key.path[0] == "bronze"
        )
        assert {
            "offsets_behind_latest",
            "input_rows_per_second",
            "seconds_since_last_batch",
            "batch_id",
        } <= set(bronze_obs.metadata)

        # The batch mode meets the continuous run's locks and writes nothing.
        before = delta_logs(pipeline)
        with pytest.raises(StreamBusy, match=f"dagster continuous run {run_1}"):
            run_streams(spark, pipeline, available_now=True)
        assert delta_logs(pipeline) == before

        # Events keep flowing while the pipeline dies.
        stop = threading.Event()
        flowing: list[Delivered] = []
        simulator = ShopSimulator(
            62, START, faults=FaultRates.parse("all"), orders_topic=orders, payments_topic=payments
        )
        ensure_topics(pipeline.profile.kafka, pipeline.pipeline.sources)
        producer = threading.Thread(
            target=lambda: flowing.extend(
                produce(
                    pipeline.profile.kafka, simulator, rate=20.0, stop=stop, keep_deliveries=True
                ).deliveries
            )
        )
        producer.start()
        try:
            wait_until(
                lambda: bronze_rows(pipeline) >= len(sent) + 60,
                START_S,
                "the live events to reach bronze",
            )
            victim = held_by_run(pipeline, run_1)
            assert victim is not None
            killed_at = time.monotonic()
            for pid in process_tree(victim.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            first.wait(timeout=120)  # the op sees its process die, the run fails
            assert dagster.instance.get_run_by_id(run_1).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
            assert all(h is None for h in stream_holders(pipeline))

            tick = dagster.tick(pipeline)
            requested_at = time.monotonic()
            [request] = tick.run_requests
            reason = request.tags[RESTART_REASON_TAG]
            assert f"continuous run {run_1} died" in reason and "restarting" in reason
            assert request.run_key == f"after:{run_1}"
            again = dagster.tick(pipeline, cursor=tick.cursor)  # before the restart is carried out
            assert [r.run_key for r in again.run_requests] == [request.run_key]  # the daemon dedups
            assert again.cursor == tick.cursor  # and no second alert

            second = dagster.execute(dict(request.tags))
            processes.append(second)
            restarted_at = time.monotonic()
            wait_until(
                lambda: second.poll() is not None or the_started_run(dagster, run_ids) is not None,
                START_S,
                "the restarted run to start",
            )
            run_2 = the_started_run(dagster, run_ids)
            assert run_2 is not None, dagster.log_tail()
            assert dagster.instance.get_run_by_id(run_2).tags[RESTART_REASON_TAG] == reason  # type: ignore[union-attr]
            wait_until(
                lambda: second.poll() is not None or held_by_run(pipeline, run_2) is not None,
                START_S,
                "the restarted run to take the locks",
            )
            new_pid = held_by_run(pipeline, run_2).pid  # type: ignore[union-attr]
            wait_until(
                lambda: any(
                    b.pid == new_pid and b.batch_id is not None
                    for b in read_heartbeats(pipeline).values()
                ),
                START_S,
                "the restarted run's first batch",
            )
            first_batch_at = time.monotonic()
            assert "is healthy" in (dagster.tick(pipeline).skip_message or "")
        finally:
            stop.set()
            producer.join(timeout=120)
        sent += flowing
        assert len(flowing) > 60

        wait_until(
            lambda: (
                second.poll() is not None
                or (bronze_rows(pipeline) == len(sent) and landed(pipeline) == len(sent))
            ),
            START_S,
            f"the restarted run to catch up with all {len(sent)} records",
        )
        assert second.poll() is None, dagster.log_tail()
        stop_run(dagster, second, pipeline, run_2)
        assert dagster.instance.get_run_by_id(run_2).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
        print(
            f"\nsupervision timings: kill -> run failed and restart requested "
            f"{requested_at - killed_at:.1f} s; request -> restarted run launched "
            f"{restarted_at - requested_at:.1f} s; restart -> first batch "
            f"{first_batch_at - restarted_at:.1f} s; kill -> first batch "
            f"{first_batch_at - killed_at:.1f} s"
        )
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)

    assert_exact(spark, pipeline, sent)
    assert_runless_materializations(dagster, pipeline, healthy)


def assert_runless_materializations(dagster: Dagster, pipeline: Settings, first: Any) -> None:
    """The ticks reported every table's commits as materializations without a run: a later
    tick (its cursor chained) reports the commits since, and a table's reports add up to its
    rows."""
    final = dagster.tick(pipeline, cursor=first.cursor)
    reports = [
        e
        for e in (*first.asset_events, *final.asset_events)
        if isinstance(e, dg.AssetMaterialization)
    ]
    orders = dg.AssetKey(["silver", "orders"])
    early = [e for e in first.asset_events if getattr(e, "asset_key", None) == orders]
    late = [e for e in final.asset_events if isinstance(e, dg.AssetMaterialization)]
    late = [e for e in late if e.asset_key == orders]
    assert early and late, "silver.orders was reported at both ticks"
    version = lambda e: e.metadata["delta_version"].value  # noqa: E731
    assert min(map(version, late)) > max(
        version(e) for e in early if isinstance(e, dg.AssetMaterialization)
    )
    assert {
        "delta_version",
        "commits",
        "rows_added",
        "rows_total",
        "newest_event_time",
        "seconds_event_to_visible",
        "seconds_kafka_to_visible",
    } <= set(late[-1].metadata)
    assert all(e.partition for e in late)  # day partitions, as the asset is partitioned
    checked = 0
    for table in pipeline_tables(pipeline):
        rows = live_rows(table.path)
        mine = [e for e in reports if e.asset_key == table_key(table)]
        if rows:
            assert sum(e.metadata["rows_added"].value for e in mine) == rows, table.qualified
            checked += 1
    assert checked >= 6  # bronze, silver, quarantine and duplicates of the event topics at least
    # Each tick judged the freshness of the tables it reported, after their materializations
    # (so the UI shows the result against the newest data), and the streams were fresh.
    fresh = [
        e
        for e in final.asset_events
        if isinstance(e, dg.AssetCheckEvaluation) and e.check_name == "freshness"
    ]
    assert orders in {e.asset_key for e in fresh}
    assert all(e.passed for e in fresh), [e.description for e in fresh if not e.passed]
    events = list(final.asset_events)
    assert min(events.index(e) for e in fresh) > max(events.index(e) for e in late)
