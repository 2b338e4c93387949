"""Every notebook of notebooks/ runs top to bottom, headless, in a kernel of its own on a small
lake the demo's generators fill (quarantined records and customer changes included); its
outputs must show that lake's data: figures worked out here from what was sent to Kafka.

The lake is built once; the notebooks run side by side, each kernel with the smallest Spark that
reads the lake (profile `notebooks`), and every kernel's Spark driver must be gone at the end."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from pyspark.sql import SparkSession

from devstack.generator.customers import CustomerChanges
from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates, ShopSimulator
from streaming.config import CONF_ENV, PROFILE_ENV, Settings
from streaming.kafka_client import ensure_topics
from streaming.runner import query_names, run_streams
from tests.conftest import REPO, write_shop_conf
from tests.gold_oracle import expected_gold
from tests.helpers import START, wait_until
from tests.integration.test_silver_cdc import oracle as cdc_oracle
from tests.integration.test_silver_events import oracle as events_oracle

# The lake and every notebook: minutes on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PROFILE = "notebooks"
EVENTS, CHANGES, MORE_CHANGES = 400, 80, 40
# A kernel keeps a core busy only part of the time (its start, Python, the driver's start), so
# four at once keep two cores busy (on a busy two-core machine: 87 s, against 109 s two at once).
KERNELS_AT_ONCE = 4
CELL_TIMEOUT_S = 300


@dataclass(frozen=True)
class NotebookLake:
    settings: Settings
    driver_marker: str  # on the command line of every kernel's Spark driver
    expected: dict[str, list[str]]  # by notebook name: what its outputs must show


@dataclass(frozen=True)
class Executed:
    notebook: Any  # nbformat's NotebookNode, with outputs
    error: str | None
    seconds: float


def write_notebook_profile(settings: Settings, app_name: str) -> None:
    """Profile `notebooks`: the test's lake, read by the smallest Spark that reads it fast (one
    core and shuffle partition, no UI, no whole-stage code generation for a few rows, a JIT and
    a garbage collector for a short-lived driver: half the time of the defaults)."""
    profiles = settings.conf_dir / "profiles"
    doc = yaml.safe_load((profiles / "local.yaml").read_text())
    doc["spark"].update(
        master="local[1]",
        app_name=app_name,
        shuffle_partitions=1,
        ui_enabled=False,
        driver_java_options="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        extra_conf={"spark.driver.memory": "1g", "spark.sql.codegen.wholeStage": "false"},
    )
    (profiles / f"{PROFILE}.yaml").write_text(yaml.safe_dump(doc))


def replay_offsets(quarantined: set[tuple[str, int, int]], topic: str) -> tuple[str, str, int]:
    """(--from-offsets, --until-offsets, records in those ranges) over the quarantined records
    of `topic`: per partition, its first quarantined offset up to the last, inclusive."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t, partition, offset in quarantined:
        if t == topic:
            first[partition] = min(offset, first.get(partition, offset))
            last[partition] = max(offset, last.get(partition, offset))
    start = json.dumps({str(p): first[p] for p in sorted(first)})
    until = json.dumps({str(p): last[p] + 1 for p in sorted(last)})
    return start, until, sum(last[p] + 1 - first[p] for p in first)


def customers_diff(
    before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]
) -> tuple[int, int, int]:
    """(added, changed, removed) customers between two current states."""
    changed = sum(1 for k in before.keys() & after.keys() if before[k] != after[k])
    return len(after.keys() - before.keys()), changed, len(before.keys() - after.keys())


@pytest.fixture(scope="module")
def notebook_lake(
    spark: SparkSession, broker: Settings, tmp_path_factory: pytest.TempPathFactory
) -> NotebookLake:
    """The demo shop's events (every fault) and customer changes, streamed into a lake in two
    runs (customers changing in between), and what each notebook must show of it."""
    started, unique = time.monotonic(), uuid.uuid4().hex[:8]
    # A few records per bronze batch, so the progress table records Kafka lag; an SLA no
    # table of this lake breaches however slowly the test runs.
    shop = write_shop_conf(
        tmp_path_factory.mktemp("notebooks"),
        broker,
        unique,
        pipeline={
            "bronze": {"max_offsets_per_trigger": 100},
            "orchestration": {"freshness": {"default_minutes": 240}},
        },
    )
    app_name = f"headwater-notebooks-{unique}"
    write_notebook_profile(shop, app_name)
    orders, payments, customers = (s.topic for s in shop.pipeline.sources)
    kafka = shop.profile.kafka
    ensure_topics(kafka, shop.pipeline.sources)
    # Customers C00001-C00060 order; the CDC feed knows C00001-C00040 and the ones it adds.
    # Two events a second of event time: a few minutes of revenue.
    feed = ShopSimulator(
        61,
        START,
        rate=2.0,
        faults=FaultRates.parse("all"),
        customers=60,
        orders_topic=orders,
        payments_topic=payments,
    )
    events: list[Delivered] = produce(kafka, feed, count=EVENTS, keep_deliveries=True).deliveries
    people = CustomerChanges(
        61, START, faults=FaultRates.parse("duplicates,out_of_order"), initial=40, topic=customers
    )
    first = produce(kafka, people, count=CHANGES, keep_deliveries=True).deliveries
    run_streams(spark, shop, available_now=True)
    # Customers change again: silver.customers gets a second version to diff with the first.
    changes = first + produce(kafka, people, count=MORE_CHANGES, keep_deliveries=True).deliveries
    run_streams(spark, shop, [customers], available_now=True)

    _, quarantined, _ = events_oracle(events, orders)
    assert {t for t, _, _ in quarantined} == {orders, payments}, "faults on both event topics"
    revenue, by_customer = expected_gold(events, changes, orders)
    placed = sum(c[3] for c in by_customer.values())
    minutes = len({minute for minute, _ in revenue})
    current_before, _ = cdc_oracle(first)
    current, versions = cdc_oracle(changes)
    added, changed, removed = customers_diff(current_before, current)
    assert changed, "the second run changes customers"
    start, until, in_range = replay_offsets(quarantined, orders)
    bronze_writer = query_names(shop)[f"bronze:{shop.pipeline.sources[0].topic}"]
    print(f"notebooks' lake built in {time.monotonic() - started:.0f} s")
    return NotebookLake(
        shop,
        f"spark.app.name={app_name}",
        {
            "explore_gold": [
                f"gold.revenue_per_minute: {len(revenue):,} rows over {minutes:,} minutes",
                f"gold.customer_orders: {len(by_customer):,} customers with at least one order "
                f"placed, {placed:,} orders placed",
                f"gold.revenue_per_minute counts {placed:,} orders placed",
            ],
            "silver_time_travel": [
                # v0 created the table, each run's batch MERGEd once.
                f"version 1 -> 2: {added:,} added, {changed:,} changed, {removed:,} removed",
                f"silver.customers_history: {sum(len(v) for v in versions.values()):,} versions "
                f"of {sum(1 for v in versions.values() if v):,} customers, "
                f"{len(current):,} of them current",
                f"silver.customers: {len(current):,} customers now",
            ],
            "quarantine_triage": [
                f"quarantined records: {len(quarantined):,}",
                f"replay --topic {orders} --from-offsets '{start}' --until-offsets '{until}'",
                f"bronze holds {len(quarantined):,} of the {len(quarantined):,} quarantined",
                f"replay {orders}: would read {in_range:,} records, {in_range:,} already in "
                "bronze, would insert 0",
            ],
            "freshness_and_lag": [
                f"bronze streams read {len(events) + len(changes):,} Kafka records",
                bronze_writer,  # the query that writes bronze.<orders>, in the topology's name
                "freshness: 16 of 16 tables within their SLA",  # 3 topics' 14 tables + 2 gold
            ],
        },
    )


def driver_pids(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (the kernels' Spark drivers)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return found


async def execute(path: Path, env: dict[str, str]) -> Executed:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",  # the python running the tests: the venv's
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    error = None
    try:
        await client.async_execute(env=env)
    except CellExecutionError as exc:
        error = str(exc)
    return Executed(notebook, error, time.monotonic() - started)


async def execute_all(env: dict[str, str], marker: str) -> tuple[dict[str, Executed], bool]:
    """Every notebook, KERNELS_AT_ONCE at a time; and whether a kernel's driver was seen."""
    running = asyncio.Semaphore(KERNELS_AT_ONCE)
    seen: list[bool] = []

    async def one(path: Path) -> Executed:
        async with running:
            return await execute(path, env)

    async def watch() -> None:
        while not seen:
            if driver_pids(marker):
                seen.append(True)
            await asyncio.sleep(1)

    watcher = asyncio.create_task(watch())
    try:
        done = await asyncio.gather(*(one(p) for p in NOTEBOOKS))
    finally:
        watcher.cancel()
    return {p.stem: result for p, result in zip(NOTEBOOKS, done, strict=True)}, bool(seen)


@pytest.fixture(scope="module")
def executed(notebook_lake: NotebookLake) -> Iterator[dict[str, Executed]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the plots into the outputs
    env |= {CONF_ENV: str(notebook_lake.settings.conf_dir), PROFILE_ENV: PROFILE}
    started = time.monotonic()
    results, driver_seen = asyncio.run(execute_all(env, notebook_lake.driver_marker))
    took = ", ".join(f"{name} {r.seconds:.0f} s" for name, r in results.items())
    print(f"notebooks executed in {time.monotonic() - started:.0f} s ({took})")
    assert driver_seen, f"no Spark driver with {notebook_lake.driver_marker} was seen"
    yield results


def outputs(notebook: Any) -> tuple[str, int]:
    """(the text a notebook showed, the number of images it drew)."""
    texts, images = [], 0
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                texts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                data = out.get("data", {})
                texts += [data.get("text/plain", ""), data.get("text/html", "")]
                images += "image/png" in data
    return "\n".join(texts), images


def test_every_notebook_is_found() -> None:
    assert NOTEBOOKS, "no notebooks in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_the_lake_and_shows_its_data(
    path: Path, notebook_lake: NotebookLake, executed: dict[str, Executed]
) -> None:
    result = executed[path.stem]
    assert result.error is None, f"{path.name} failed:\n{result.error}"
    text, images = outputs(result.notebook)
    assert text.strip(), f"{path.name} showed nothing"
    for expected in notebook_lake.expected.get(path.stem, []):
        assert expected in text, f"{path.name} does not show {expected!r}; it showed:\n{text}"
    sources = "\n".join(cell.source for cell in result.notebook.cells)
    if "matplotlib" in sources:
        assert images, f"{path.name} plots, but drew nothing"


def test_every_checked_notebook_exists(notebook_lake: NotebookLake) -> None:
    """A renamed notebook does not lose its checks silently."""
    assert set(notebook_lake.expected) <= {p.stem for p in NOTEBOOKS}


def test_the_kernels_spark_drivers_stop(
    notebook_lake: NotebookLake, executed: dict[str, Executed]
) -> None:
    marker = notebook_lake.driver_marker
    wait_until(lambda: not driver_pids(marker), 60, "the notebooks' Spark drivers to exit")
