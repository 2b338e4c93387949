"""Test helpers: producing known records, reading bronze back, waiting on conditions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

from pyspark.sql import SparkSession

from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates, ShopSimulator
from streaming.bronze import LAYER
from streaming.config import Settings
from streaming.delta_log import latest_version, live_rows
from streaming.kafka_client import ensure_topics
from streaming.tables import read_delta

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
Coordinate = tuple[str, int, int]
T = TypeVar("T")
SmallRow = tuple[int, str, Decimal]


def produce_shop(
    settings: Settings, count: int, seed: int, faults: str = "none"
) -> list[Delivered]:
    """Send `count` shop records to the settings' first two topics (orders, payments);
    returns where Kafka stored each one."""
    orders, payments = settings.pipeline.sources[0].topic, settings.pipeline.sources[1].topic
    ensure_topics(settings.profile.kafka, settings.pipeline.sources)
    simulator = ShopSimulator(
        seed, START, faults=FaultRates.parse(faults), orders_topic=orders, payments_topic=payments
    )
    return produce(settings.profile.kafka, simulator, count=count, keep_deliveries=True).deliveries


def bronze_records(
    spark: SparkSession, settings: Settings
) -> Counter[tuple[str, int, int, bytes | None, bytes | None]]:
    """Every bronze row of the settings' sources as (topic, partition, offset, key, value), counted."""
    found: Counter[tuple[str, int, int, bytes | None, bytes | None]] = Counter()
    for source in settings.pipeline.sources:
        table = read_delta(spark, settings.table_path(LAYER, source.table_name))
        if table is None:
            continue
        for r in table.select("topic", "partition", "offset", "key", "value").collect():
            found[(r.topic, r.partition, r.offset, _bytes(r.key), _bytes(r.value))] += 1
    return found


def table_rows(settings: Settings, *qualified: str) -> int:
    """Rows of the named tables ('layer.table'; 0 for a table not yet written), read from
    their Delta logs: cheap enough to poll while a stream writes, unlike a Spark count."""
    return sum(live_rows(settings.table_path_by_name(name)) or 0 for name in qualified)


def on_new_commits(settings: Settings, qualified: str, check: Callable[[], T]) -> Callable[[], T]:
    """`check` (a Spark read of table `qualified`) run again only once the table has a new
    commit; in between, its last answer. For polling a value a count cannot show."""
    last: list[tuple[int | None, T]] = []  # (version, answer) of the latest check

    def polled() -> T:
        version = latest_version(settings.table_path_by_name(qualified))
        if not last or last[0][0] != version:
            last[:] = [(version, check())]
        return last[0][1]

    return polled


def bronze_rows(settings: Settings) -> int:
    """Rows of every source's bronze table, from the Delta logs."""
    return table_rows(settings, *(f"{LAYER}.{s.table_name}" for s in settings.pipeline.sources))


def expected_records(
    sent: list[Delivered],
) -> Counter[tuple[str, int, int, bytes | None, bytes | None]]:
    return Counter((d.topic, d.partition, d.offset, d.key, d.value) for d in sent)


def write_small_files(
    spark: SparkSession, path: str, commits: int, first: int = 0
) -> list[SmallRow]:
    """`commits` appends of one small file (ten rows) each to the Delta table at `path`, the
    way a busy stream leaves a table; returns the rows written."""
    rows: list[SmallRow] = []
    for n in range(first, first + commits):
        batch = [(n * 10 + i, f"c{(n + i) % 7}", Decimal(f"{n}.{i:02d}")) for i in range(10)]
        frame = spark.createDataFrame(batch, "id long, customer string, amount decimal(10,2)")
        frame.coalesce(1).write.format("delta").mode("append").save(path)
        rows += batch
    return rows


def small_rows(spark: SparkSession, path: str) -> list[SmallRow]:
    """The rows of a table `write_small_files` wrote, sorted, value for value."""
    table = read_delta(spark, path)
    assert table is not None, path
    return sorted((r.id, r.customer, r.amount) for r in table.collect())


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.5
) -> None:
    """Poll `condition` until it holds; fail the test with `what` after `timeout_s` seconds."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def _bytes(value: bytearray | bytes | None) -> bytes | None:
    return None if value is None else bytes(value)
