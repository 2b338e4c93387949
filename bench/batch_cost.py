"""What one micro-batch costs each silver and gold writer on a warm driver, alone.

The demo's batch times (ops.stream_progress) are what eight queries sharing two cores make of
this; here each writer runs by itself, so the figure is the writer's own: wall time, Spark
jobs and CPU-seconds of the driver per call (JVM, local executors included, and Python: a
figure that stays meaningful when the machine is shared), on batches the size the demo's
second brings (20 shop events, 2 customer changes), after warm-up calls.

    .venv/bin/python bench/batch_cost.py [--rounds 12] [--warmup 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from bench.measure import process_usage
from bench.workspace import scratch_settings
from devstack.generator.customers import CustomerChanges
from devstack.generator.shop import Record, ShopSimulator
from streaming.bronze import BRONZE_SCHEMA
from streaming.config import Settings, Source
from streaming.contracts.model import CdcContract, Contract
from streaming.gold.definitions import load_gold_tables, with_keys
from streaming.gold.maintain import GoldBatchWriter, ensure_gold_table
from streaming.session import build_spark_session
from streaming.silver.cdc import CdcBatchWriter
from streaming.silver.events import EventBatchWriter
from streaming.silver.streams import (
    cdc_contract,
    ensure_cdc_tables,
    ensure_event_tables,
    event_contract,
)
from streaming.tables import read_table

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


class BronzeBatches:
    """Bronze micro-batches of one topic from the demo's generators, offsets continuing."""

    def __init__(self, spark: SparkSession, records: Iterator[Record], topic: str) -> None:
        self.spark = spark
        self.records = records
        self.topic = topic
        self.offset = 0

    def next(self, size: int) -> DataFrame:
        now = datetime.now(UTC)
        rows: list[tuple[Any, ...]] = []
        for _ in range(size):
            record = next(self.records)
            rows.append(
                (
                    record.key,
                    record.value,
                    [],
                    self.topic,
                    self.offset % 3,
                    self.offset,
                    now,
                    0,
                    now,
                    now.date(),
                )
            )
            self.offset += 1
        return self.spark.createDataFrame(rows, BRONZE_SCHEMA)


@dataclass(frozen=True)
class DemoBatches:
    """The demo's order and customer topics with their silver tables made, and their bronze
    batches from the demo's generators (seed 7)."""

    settings: Settings
    orders: Source
    customers: Source
    contract: Contract
    cdc: CdcContract
    shop: BronzeBatches
    changes: BronzeBatches

    @classmethod
    def of(cls, spark: SparkSession, settings: Settings) -> DemoBatches:
        sources = {s.topic: s for s in settings.pipeline.sources}
        orders, customers = sources["shop.orders"], sources["shop.public.customers"]
        contract, cdc = event_contract(settings, orders), cdc_contract(settings, customers)
        assert contract is not None and cdc is not None
        ensure_event_tables(spark, settings, orders, contract)
        ensure_cdc_tables(spark, settings, customers, cdc)
        shop = BronzeBatches(spark, iter(ShopSimulator(7, START, rate=20.0)), orders.topic)
        changes = BronzeBatches(
            spark, iter(CustomerChanges(7, START, rate=2.0, initial=500)), customers.topic
        )
        return cls(settings, orders, customers, contract, cdc, shop, changes)

    def event_writer(self) -> EventBatchWriter:
        return EventBatchWriter(self.settings, self.orders, self.contract)

    def cdc_writer(self) -> CdcBatchWriter:
        return CdcBatchWriter(self.settings, self.customers, self.cdc)


def timed(
    spark: SparkSession, name: str, call: Callable[[int], None], rounds: int, warmup: int
) -> dict[str, Any]:
    tracker = spark.sparkContext.statusTracker()
    jvm = int(spark._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    seconds, cpu, jobs = [], [], []
    for batch_id in range(warmup + rounds):
        group = f"bench-{name}-{batch_id}"
        spark.sparkContext.setJobGroup(group, group)
        started, cpu_before = time.monotonic(), cpu_seconds(jvm)
        call(batch_id)
        elapsed, used = time.monotonic() - started, cpu_seconds(jvm) - cpu_before
        if batch_id >= warmup:
            seconds.append(elapsed)
            cpu.append(used)
            jobs.append(len(tracker.getJobIdsForGroup(group)))
    spark.sparkContext.setJobGroup("bench", "bench")
    return {
        "writer": name,
        "median_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
        "median_cpu_s": round(statistics.median(cpu), 3),
        "spark_jobs": statistics.median(jobs),
    }


def cpu_seconds(jvm_pid: int) -> float:
    """CPU seconds used so far by this driver: its JVM and this Python process. Unlike wall
    time, it hardly moves when other work shares the machine."""
    own = os.times()
    return process_usage(jvm_pid).cpu_s + own.user + own.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--conf", default="conf")
    parser.add_argument("--profile", default="local")
    parser.add_argument("--jobs", action="store_true", help="list each writer's Spark jobs")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting to try"
    )
    args = parser.parse_args()
    settings = scratch_settings(
        Path(args.conf),
        args.profile,
        Path(tempfile.mkdtemp(prefix="headwater-batch-cost-")),
        spark_conf=dict(item.split("=", 1) for item in args.set),
    )
    spark = build_spark_session(settings, ui=args.jobs)
    demo = DemoBatches.of(spark, settings)
    shop, changes = demo.shop, demo.changes
    changes.next(500)  # the snapshot, applied below before timing
    order_writer, customer_writer = demo.event_writer(), demo.cdc_writer()
    customer_writer(changes.next(500), 10_000)
    results = [
        timed(spark, "silver events", lambda b: order_writer(shop.next(20), b), **vars_of(args)),
        timed(spark, "silver cdc", lambda b: customer_writer(changes.next(2), b), **vars_of(args)),
    ]
    for table in load_gold_tables(settings):
        ensure_gold_table(spark, settings, table)
        writer = GoldBatchWriter(settings, table)
        source = table.sources[0]
        frame = read_table(spark, settings, source.table)
        assert frame is not None
        keys = with_keys(frame, source).select(*writer.key_columns).limit(20)
        results.append(timed(spark, f"gold {table.name}", gold_call(writer, keys), **vars_of(args)))
    for row in results:
        print(json.dumps(row))
    if args.jobs:
        print_jobs(spark, args.warmup)
    spark.stop()


def print_jobs(spark: SparkSession, batch_id: int) -> None:
    """The Spark jobs of one timed call of each writer, from the driver's REST API."""
    from urllib.request import urlopen

    ui = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urlopen(f"{ui}/api/v1/applications/{app}/jobs") as response:
        jobs = json.load(response)
    for job in sorted(jobs, key=lambda j: j["jobId"]):
        group = job.get("jobGroup", "")
        if group.endswith(f"-{batch_id}"):
            took = (
                datetime.fromisoformat(job["completionTime"].replace("GMT", "+00:00"))
                - datetime.fromisoformat(job["submissionTime"].replace("GMT", "+00:00"))
            ).total_seconds()
            print(f"{group:32} {took:6.3f}s {job['name'][:90]}")


def gold_call(writer: GoldBatchWriter, keys: DataFrame) -> Callable[[int], None]:
    return lambda batch_id: writer(keys, batch_id)


def vars_of(args: argparse.Namespace) -> dict[str, int]:
    return {"rounds": args.rounds, "warmup": args.warmup}


if __name__ == "__main__":
    main()
