"""What one micro-batch of each silver writer costs as its silver table grows.

For each size N, a scratch lake of its own (no broker: the writers are called directly, as in
batch_cost.py) gets silver.orders with N rows and silver.customers, _history and _changes
with N customers, written with Spark from `spark.range(N)` in the tables' own schemas and
partitioning (the streams' ensure_* functions create them). Then each writer is timed per
call, after warm-up calls, on the demo's batch (20 order events; 2 customer changes) and on a
larger one (default 2000 events; 200 changes): median and max wall seconds and Spark jobs.

The tables, as they stand:
- silver.orders spreads its rows evenly over `days` event dates (default 30) ending on the
  day the batches' events fall on (batch_cost.START), partitioned by event_date as the
  stream writes it. The dedup window (a day either side of the batch's event dates,
  events.HORIZON) then covers that day and the one before: 2 / days of the table (6.7 % at
  30 days), a share that stays fixed as N grows, so the window's rows grow with N. (A table
  that grows by age at a steady rate instead would keep the window's rows fixed.)
- Every customer has one change (a snapshot read, op r) in _changes, one version in
  _history and its row in silver.customers; none is partitioned, as the stream leaves them.
- Files as a compaction leaves them: one per event date of silver.orders (84 bytes a row:
  28 MiB a day at 10M rows over 30 days), and each customer table cut into files of equal
  rows, at most ROWS_PER_FILE (4 million: 110 MiB of _changes at 27 bytes a row, 60 MiB of
  the others at 16); OPTIMIZE's own cap is 1 GiB. Each size is built from scratch.

An unreported first pass on a small table (`warm_table` rows) warms the driver up, so the
first size does not pay for it. The batches come from the demo's generators through
batch_cost.BronzeBatches, built before the clock starts. One order event in 10 is a copy of
a silver.orders row of the last day (the same event id from another Kafka record), so dedup
finds duplicates in the table; the changes after the generator's snapshot (which is read and
dropped) update or delete customers the table holds (about 70 %) or insert new ones, so the
MERGEs match rows. Of a large table, the changed customers all lie in its first file.

    .venv/bin/python -m bench.table_growth [--sizes 1000000,10000000] [--rounds 6]
        [--warmup 2] [--large 2000,200] [--days 30] [--warm-table 1000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.batch_cost import START, BronzeBatches, timed
from bench.report import write_results
from bench.workspace import scratch_settings
from devstack.generator.customers import (
    COUNTRIES,
    CUSTOMERS_TOPIC,
    FIRST,
    LAST,
    CustomerChanges,
)
from devstack.generator.shop import CURRENCIES, ORDERS_TOPIC, Record, ShopSimulator
from streaming.config import Settings, Source
from streaming.contracts.model import CdcContract, Contract
from streaming.silver.cdc import CdcBatchWriter
from streaming.silver.events import DUPLICATES, EVENT_DATE, SILVER, EventBatchWriter
from streaming.silver.streams import (
    cdc_contract,
    ensure_cdc_tables,
    ensure_event_tables,
    event_contract,
)
from streaming.tables import read_delta

SIZES = (100_000, 1_000_000, 10_000_000)
DEMO_BATCH = (20, 2)  # order events, customer changes: what the demo's second brings
LARGE_BATCH = (2000, 200)
COPY_EVERY = 10  # every 10th order event of a batch copies a row silver.orders holds
ROWS_PER_FILE = 4_000_000  # a compacted file: see the docstring
WARM_TABLE = 1000  # rows of the unreported first pass
WRITERS = {"events": "silver dedup (events)", "cdc": "silver CDC MERGE"}
Step = Callable[[str], None]
Writer = Callable[[DataFrame, int], None]


def measure(
    sizes: list[int],
    *,
    rounds: int = 6,
    warmup: int = 2,
    large: tuple[int, int] = LARGE_BATCH,
    days: int = 30,
    warm_table: int = WARM_TABLE,
    conf: Path = Path("conf"),
    profile: str = "local",
    step: Step | None = None,
) -> dict[str, Any]:
    """Per table size: the build's time, files and bytes, and each writer's cost per call on
    the demo's batch and on `large` (events, changes). First, unreported, the same on a table
    of `warm_table` rows (0: none), so the first size does not pay for the driver's warm-up.
    Builds its own SparkSession and stops it (call it where no other session runs); its
    scratch lake is deleted afterwards."""
    from bench.run import machine  # here, not at the top: bench.run may import this module

    say = step or (lambda text: None)
    started, load_before = datetime.now(UTC), os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="headwater-table-growth-"))
    spark = None
    try:
        results = []
        for n, rows in enumerate([warm_table, *sizes] if warm_table else sizes):
            workspace = root / f"{n}-{rows}"
            settings = scratch_settings(conf, profile, workspace)
            if spark is None:
                from streaming.session import build_spark_session

                say("starting the Spark driver")
                spark = build_spark_session(settings)
            warming = warm_table and n == 0
            if warming:
                say(f"warming the driver up on a table of {rows} rows (not reported)")
            figures = _one_size(
                spark,
                settings,
                rows,
                1 if warming else rounds,
                warmup,
                large,
                days,
                say if not warming else lambda text: None,
                label=f"growth{n}",  # the job groups of each pass are its own
            )
            if not warming:
                results.append(figures)
            shutil.rmtree(workspace, ignore_errors=True)
    finally:
        if spark is not None:
            spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        # The machine's 1-minute load average before and after: other work skews the figures.
        "load_average": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "plan": {
            "sizes": sizes,
            "rounds": rounds,
            "warmup": warmup,
            "warm_table": warm_table,
            "days": days,
            "dedup_window_share": round(min(2, days) / days, 4),
            "rows_per_file_max": ROWS_PER_FILE,
            "copy_every": COPY_EVERY,
            "batches": {
                "demo": {"events": DEMO_BATCH[0], "changes": DEMO_BATCH[1]},
                "large": {"events": large[0], "changes": large[1]},
            },
        },
        "sizes": results,
        "growth": growth(results),
    }


@dataclass(frozen=True)
class Shop:
    """The demo's order events and customer changes in one workspace: sources and contracts."""

    settings: Settings
    orders: Source
    customers: Source
    order_contract: Contract
    customer_contract: CdcContract

    @classmethod
    def of(cls, settings: Settings) -> Shop:
        sources = {s.topic: s for s in settings.pipeline.sources}
        orders, customers = sources[ORDERS_TOPIC], sources[CUSTOMERS_TOPIC]
        order_contract = event_contract(settings, orders)
        customer_contract = cdc_contract(settings, customers)
        assert order_contract is not None and customer_contract is not None
        return cls(settings, orders, customers, order_contract, customer_contract)

    @property
    def orders_path(self) -> str:
        return self.settings.table_path(SILVER, self.order_contract.silver_table)

    def customers_path(self, suffix: str) -> str:
        """silver.customers (''), its _history or its _changes."""
        return self.settings.table_path(SILVER, f"{self.customer_contract.silver_table}{suffix}")


def build_tables(spark: SparkSession, shop: Shop, rows: int, days: int) -> dict[str, Any]:
    """Every table of both silver streams, as they create them, then silver.orders with `rows`
    orders and the customer tables with `rows` customers: per table, its write's seconds,
    files and bytes."""
    ensure_event_tables(spark, shop.settings, shop.orders, shop.order_contract)
    ensure_cdc_tables(spark, shop.settings, shop.customers, shop.customer_contract)
    tables = {
        f"{SILVER}.{shop.order_contract.silver_table}": _write(
            spark, order_rows(spark, shop.orders.topic, rows, days), shop.orders_path, EVENT_DATE
        )
    }
    for suffix, frame in customer_tables(spark, shop.customers.topic, rows).items():
        name = f"{SILVER}.{shop.customer_contract.silver_table}{suffix}"
        tables[name] = _write(spark, frame, shop.customers_path(suffix), None)
    return tables


def _one_size(
    spark: SparkSession,
    settings: Settings,
    rows: int,
    rounds: int,
    warmup: int,
    large: tuple[int, int],
    days: int,
    say: Step,
    label: str,
) -> dict[str, Any]:
    shop = Shop.of(settings)
    say(f"{rows} rows: building the tables")
    started = time.monotonic()
    tables = build_tables(spark, shop, rows, days)
    build_s = round(time.monotonic() - started, 1)
    window = dedup_window_rows(spark, shop)
    say(
        f"{rows} rows: built in {build_s:.0f} s; "
        + ", ".join(
            f"{t} {v['files']} files {v['bytes'] / 2**20:.0f} MiB" for t, v in tables.items()
        )
    )
    calls = rounds + warmup
    copies = table_copies(spark, shop, calls * (DEMO_BATCH[0] + large[0]) // COPY_EVERY + 1)
    events = BronzeBatches(spark, order_events(copies), shop.orders.topic)
    events.offset = rows  # past the table's Kafka offsets: a copy comes from another record
    changes, ops = customer_changes(spark, shop.customers.topic, rows)
    writers: dict[str, tuple[Writer, BronzeBatches]] = {
        "events": (EventBatchWriter(settings, shop.orders, shop.order_contract), events),
        "cdc": (CdcBatchWriter(settings, shop.customers, shop.customer_contract), changes),
    }
    figures: dict[str, dict[str, Any]] = {kind: {} for kind in writers}
    for batch, batch_rows in (("demo", DEMO_BATCH), ("large", large)):
        first = 0 if batch == "demo" else calls  # batch ids go on rising: none is a replay
        for (kind, (write, source)), n in zip(writers.items(), batch_rows, strict=True):
            say(f"{rows} rows: {WRITERS[kind]}, {n} rows per batch")
            frames = [source.next(n) for _ in range(calls)]
            cost = timed(
                spark, f"{label}-{kind}-{batch}", _calls(write, frames, first), rounds, warmup
            )
            # Every figure timed() gives: wall seconds, Spark jobs (and CPU seconds, where it
            # measures them: a figure that hardly moves when other work shares the machine).
            figures[kind][batch] = {
                "batch_rows": n,
                **{k: v for k, v in cost.items() if k != "writer"},
            }
    return {
        "rows": rows,
        "build_s": build_s,
        "tables": tables,
        "dedup_window_rows": window,
        "writers": figures,
        "checks": _checks(spark, shop, rows, calls * (DEMO_BATCH[0] + large[0]), ops),
    }


def _calls(write: Writer, frames: list[DataFrame], first: int) -> Callable[[int], None]:
    """Call `n` of a timed series: the writer on the n-th prepared batch, as batch first + n."""
    return lambda n: write(frames[n], first + n)


# --- the tables ------------------------------------------------------------------------


def _write(
    spark: SparkSession, frame: DataFrame, path: str, partition: str | None
) -> dict[str, Any]:
    """Append `frame` to the Delta table at `path` in the table's own schema (columns by name,
    in its order, cast to its types), in files of at most ROWS_PER_FILE rows: the write's
    seconds, and the table's files and bytes afterwards."""
    table = read_delta(spark, path)
    assert table is not None
    missing = [f.name for f in table.schema.fields if f.name not in frame.columns]
    if missing:
        raise ValueError(f"the builder of {path} has no column {', '.join(missing)}")
    rows = frame.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in table.schema])
    started = time.monotonic()
    writer = rows.write.format("delta").mode("append").option("maxRecordsPerFile", ROWS_PER_FILE)
    if partition:
        writer = writer.partitionBy(partition)
    writer.save(path)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None
    return {
        "write_s": round(time.monotonic() - started, 1),
        "files": detail.numFiles,
        "bytes": detail.sizeInBytes,
    }


def _pick(values: tuple[str, ...], index: Column) -> Column:
    return F.element_at(F.array(*[F.lit(v) for v in values]), (index % len(values) + 1).cast("int"))


def order_rows(spark: SparkSession, topic: str, rows: int, days: int) -> DataFrame:
    """`rows` silver order rows, spread evenly over `days` event dates ending on START's,
    between midnight and START's time of day; one file's worth per date."""
    i = F.col("id")
    digest = F.md5(F.concat(F.lit("order-"), i.cast("string")))
    event_id = F.concat_ws(
        "-", *[F.substring(digest, start, length) for start, length in UUID_PARTS]
    )
    before_start = (i % days) * 86_400 + (i / days).cast("long") % _seconds_into_day()
    event_time = F.timestamp_seconds(F.lit(int(START.timestamp())) - before_start)
    v2 = i % 10 == 0  # the demo's share of contract version 2 events
    frame = spark.range(rows).select(
        event_id.alias("event_id"),
        F.when(i % 20 == 0, "OrderCancelled").otherwise("OrderPlaced").alias("event_type"),
        event_time.alias("event_time"),
        F.when(v2, 2).otherwise(1).alias("schema_version"),
        F.format_string("O%09d-%s", i, F.substring(digest, 1, 8)).alias("order_id"),
        F.format_string("C%05d", i % max(1, rows // 10) + 1).alias("customer_id"),
        ((i * 7919 % 49_901 + 100) / 100).alias("amount"),
        _pick(CURRENCIES, i).alias("currency"),
        (i % 5 + 1).alias("items"),
        F.when(v2, _pick(("WELCOME10", "SPRING5", "VIP20"), (i / 10).cast("long"))).alias(
            "coupon_code"
        ),
        F.to_date(event_time).alias(EVENT_DATE),
        F.lit(topic).alias("kafka_topic"),
        (i % 3).alias("kafka_partition"),
        i.alias("kafka_offset"),
        (event_time + F.expr("INTERVAL 1 SECOND")).alias("kafka_timestamp"),
        (event_time + F.expr("INTERVAL 2 SECONDS")).alias("ingest_time"),
        F.array().alias("dq_warnings"),
    )
    # One task per date: one file per partition, as a compaction leaves them.
    return frame.repartition(F.col(EVENT_DATE))


UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _seconds_into_day() -> int:
    """Seconds from midnight to START: the rows of START's day all come before the batches."""
    return int((START - START.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds())


def customer_tables(spark: SparkSession, topic: str, rows: int) -> dict[str, DataFrame]:
    """Silver's three customer tables (by suffix: _changes, '' and _history) holding `rows`
    customers, each read once in the initial snapshot, a day before START."""
    i = F.col("id")
    first, last = _pick(FIRST, i), _pick(LAST, (i / len(FIRST)).cast("long"))
    changed_at = F.timestamp_seconds(F.lit(int((START - timedelta(days=1)).timestamp())) + i % 3600)
    files = max(1, math.ceil(rows / ROWS_PER_FILE))
    customer = spark.range(0, rows, 1, files).select(
        i,
        F.format_string("C%05d", i + 1).alias("customer_id"),
        F.concat_ws(" ", first, last).alias("name"),
        F.format_string("%s.%s%d@example.com", F.lower(first), F.lower(last), i + 2).alias("email"),
        _pick(COUNTRIES, i).alias("country"),
        F.when(i % 20 < 14, "consumer")
        .when(i % 20 < 19, "business")
        .otherwise("vip")
        .alias("segment"),
        changed_at.alias("updated_at"),
        (i + 1).alias("lsn"),
        changed_at.alias("changed_at"),
    )
    changes = customer.select(
        "*",
        F.concat_ws("@", "customer_id", F.col("lsn").cast("string")).alias("_change_key"),
        F.lit("r").alias("op"),
        F.lit(1).alias("tx_id"),
        F.lit(topic).alias("kafka_topic"),
        (i % 3).alias("kafka_partition"),
        i.alias("kafka_offset"),
        (F.col("changed_at") + F.expr("INTERVAL 1 SECOND")).alias("kafka_timestamp"),
        (F.col("changed_at") + F.expr("INTERVAL 2 SECONDS")).alias("ingest_time"),
    )
    history = customer.select(
        "*",
        F.lit("r").alias("op"),
        F.col("changed_at").alias("valid_from"),
        F.lit(None).alias("valid_to"),
        F.lit(True).alias("is_current"),
        F.lit(None).alias("closed_by_delete"),  # history_rows: no next version, no verdict
    )
    return {"_changes": changes, "": customer, "_history": history}


def dedup_window_rows(spark: SparkSession, shop: Shop) -> int:
    """Rows of silver.orders inside the dedup window of a batch on START's day."""
    day = START.date()
    table = read_delta(spark, shop.orders_path)
    assert table is not None
    window = F.col(EVENT_DATE).between(day - timedelta(days=1), day + timedelta(days=1))
    return table.where(window).count()


# --- the batches -----------------------------------------------------------------------


def table_copies(spark: SparkSession, shop: Shop, wanted: int) -> list[Record]:
    """Up to `wanted` order events that copy rows silver.orders holds on START's day, as Kafka
    records (the same event id, from another record)."""
    table = read_delta(spark, shop.orders_path)
    assert table is not None
    picked = (
        table.where(F.col(EVENT_DATE) == START.date())
        .orderBy("kafka_offset")
        .limit(wanted)
        .select(
            "event_id",
            "event_type",
            F.date_format("event_time", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").alias("event_time"),
            "schema_version",
            "order_id",
            "customer_id",
            F.col("amount").cast("double").alias("amount"),
            "currency",
            "items",
            "coupon_code",
        )
        .collect()
    )
    records = []
    for row in picked:
        event = row.asDict()
        if event["schema_version"] == 1:
            event.pop("coupon_code")
        value = json.dumps(event, separators=(",", ":")).encode()
        records.append(Record(shop.orders.topic, event["order_id"].encode(), value, "duplicates"))
    if not records:
        raise ValueError(f"silver.orders at {shop.orders_path} holds no row of {START.date()}")
    return records


def order_events(copies: list[Record]) -> Iterator[Record]:
    """The demo shop's order events (no faults), every COPY_EVERY-th a copy from `copies`."""
    shop = (r for r in ShopSimulator(7, START, rate=20.0) if r.topic == ORDERS_TOPIC)
    repeat = itertools.cycle(copies)
    for n in itertools.count(1):
        yield next(repeat) if n % COPY_EVERY == 0 else next(shop)


def customer_changes(
    spark: SparkSession, topic: str, rows: int
) -> tuple[BronzeBatches, dict[str, int]]:
    """Bronze batches of the demo's customer changes after its snapshot, which is read and
    dropped: its customers (C00001 on) are the table's. New customers get ids and lsns past
    the table's. Also the count of each op the batches carry, as they are drawn."""
    generator = CustomerChanges(7, START, rate=2.0, initial=min(500, rows))
    generator.next_id = rows + 1
    generator.lsn = rows + 1_000
    records = iter(generator)
    for _ in range(min(500, rows)):
        next(records)
    ops: dict[str, int] = {}

    def counted() -> Iterator[Record]:
        for record in records:
            if record.value is not None:
                op = json.loads(record.value)["op"]
                ops[op] = ops.get(op, 0) + 1
            yield record

    batches = BronzeBatches(spark, counted(), topic)
    batches.offset = rows  # past the _changes table's Kafka offsets
    return batches, ops


def _checks(
    spark: SparkSession, shop: Shop, rows: int, events_sent: int, ops: dict[str, int]
) -> dict[str, Any]:
    """That the batches did what they are there for: dedup found the copies of table rows,
    the MERGEs closed versions the table held."""
    duplicates = read_delta(spark, shop.settings.table_path(DUPLICATES, shop.orders.table_name))
    history = read_delta(spark, shop.customers_path("_history"))
    assert duplicates is not None and history is not None
    return {
        "order_copies_sent": events_sent // COPY_EVERY,
        "order_duplicates_found": duplicates.count(),
        "customer_ops": dict(sorted(ops.items())),
        # Versions of the table's own customers (lsn up to its size) that a change closed.
        "table_versions_closed": history.where(
            F.col("valid_to").isNotNull() & (F.col("lsn") <= rows)
        ).count(),
    }


# --- results ---------------------------------------------------------------------------


def growth(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each writer's median per call (wall seconds, and CPU seconds where measured) at the
    largest size over that at the smallest."""
    if len(sizes) < 2:
        return []
    small, big = min(sizes, key=lambda s: s["rows"]), max(sizes, key=lambda s: s["rows"])
    out = []
    for writer in WRITERS:
        for batch in ("demo", "large"):
            before, after = small["writers"][writer][batch], big["writers"][writer][batch]
            ratios = {
                f"{figure}_ratio": round(after[figure] / before[figure], 2)
                if before[figure]
                else None
                for figure in ("median_s", "median_cpu_s")
                if figure in before and figure in after
            }
            out.append(
                {
                    "writer": writer,
                    "batch": batch,
                    "rows_from": small["rows"],
                    "rows_to": big["rows"],
                    "median_s_from": before["median_s"],
                    "median_s_to": after["median_s"],
                    **ratios,
                }
            )
    return out


def markdown(results: dict[str, Any]) -> str:
    """The table of bench/results/table-growth-latest.md: one row per size, then growth."""
    plan, machine, load = results["plan"], results["machine"], results["load_average"]
    batches = plan["batches"]
    cpu = any("median_cpu_s" in f for size in results["sizes"] for f in _all(size["writers"]))
    columns = [
        (writer, batch, batches[batch][what])
        for writer, what in (("events", "events"), ("cdc", "changes"))
        for batch in ("demo", "large")
    ]
    names = {"events": "dedup, {} events", "cdc": "CDC MERGE, {} changes"}
    lines = [
        f"Silver writers per micro-batch as the table grows, {results['started']} "
        f"(commit {machine['commit']}): {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['cpu']}; pyspark {machine['pyspark']}, delta-spark {machine['delta_spark']}; "
        f"load average {load['start']:g} at the start, {load['end']:g} at the end. "
        f"silver.orders over {plan['days']} event dates (a batch's dedup window covers "
        f"{plan['dedup_window_share']:.1%} of it), one version per customer. Per call, after "
        f"{plan['warmup']} warm-up calls, of {plan['rounds']}: wall seconds median / max"
        + (" / the driver's CPU seconds median" if cpu else "")
        + " (Spark jobs).",
        "",
        "| table rows | build (s) | silver.orders files, MiB | customer tables files, MiB | "
        + " | ".join(names[w].format(n) for w, _, n in columns)
        + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for size in results["sizes"]:
        tables = size["tables"]
        orders = tables["silver.orders"]
        customer = [v for t, v in tables.items() if t.startswith("silver.customers")]
        cells = [
            f"{size['rows']:,}",
            f"{size['build_s']:.0f}",
            f"{orders['files']}, {orders['bytes'] / 2**20:.0f}",
            f"{sum(v['files'] for v in customer)}, {sum(v['bytes'] for v in customer) / 2**20:.0f}",
        ]
        for writer, batch, _ in columns:
            f = size["writers"][writer][batch]
            used = f" / {f['median_cpu_s']:.2f}" if "median_cpu_s" in f else ""
            cells.append(f"{f['median_s']:.2f} / {f['max_s']:.2f}{used} ({f['spark_jobs']:g})")
        lines.append("| " + " | ".join(cells) + " |")
    if results["growth"]:
        ratios = {(g["writer"], g["batch"]): g for g in results["growth"]}
        first = results["growth"][0]
        times = first["rows_to"] / first["rows_from"]
        lines.append(
            f"| x{times:g} rows: medians | | | | "
            + " | ".join(_ratios(ratios[(w, b)]) for w, b, _ in columns)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _all(writers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [figures for batches in writers.values() for figures in batches.values()]


def _ratios(growth: dict[str, Any]) -> str:
    """'x1.5', or 'x1.5 / x1.2' with the CPU seconds' ratio."""
    return " / ".join(
        "-" if growth[k] is None else f"x{growth[k]:g}"
        for k in ("median_s_ratio", "median_cpu_s_ratio")
        if k in growth
    )


def write(results: dict[str, Any], folder: Path) -> list[Path]:
    """table-growth-<time>.json, table-growth-latest.json and table-growth-latest.md."""
    started = datetime.fromisoformat(results["started"])
    return write_results(results, markdown(results), folder, started, "table-growth-")


def parse_size(text: str) -> int:
    """'1000000', '1M' or '100k' as a number of rows."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    number = int(text[:-1] if scale > 1 else text) * scale
    if number < 0:
        raise argparse.ArgumentTypeError(f"a table size cannot be negative: {text}")
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda t: [parse_size(s) for s in t.split(",")],
        default=list(SIZES),
        help="table sizes in rows, comma-separated (1M, 100k allowed); default 100k,1M,10M",
    )
    parser.add_argument("--rounds", type=int, default=6, help="timed calls per writer and batch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before them")
    parser.add_argument(
        "--large",
        type=lambda t: tuple(int(n) for n in t.split(",")),
        default=LARGE_BATCH,
        metavar="EVENTS,CHANGES",
        help="the larger batch: order events, customer changes (default 2000,200)",
    )
    parser.add_argument("--days", type=int, default=30, help="event dates silver.orders covers")
    parser.add_argument(
        "--warm-table",
        type=parse_size,
        default=WARM_TABLE,
        help="rows of an unreported first pass that warms the driver up (0: none)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--conf", type=Path, default=Path("conf"))
    parser.add_argument("--profile", default="local")
    args = parser.parse_args()
    if min(args.sizes) < 1:
        parser.error("--sizes: every table holds at least 1 row")
    if len(args.large) != 2 or min(args.large) < 1:
        parser.error("--large takes two positive numbers: EVENTS,CHANGES")
    if args.days < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--days and --rounds must be at least 1, --warmup at least 0")
    began = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", file=sys.stderr, flush=True)

    results = measure(
        sorted(set(args.sizes)),
        rounds=args.rounds,
        warmup=args.warmup,
        large=args.large,
        days=args.days,
        warm_table=args.warm_table,
        conf=args.conf,
        profile=args.profile,
        step=step,
    )
    for path in write(results, args.out):
        step(f"wrote {path}")
    print(markdown(results))


if __name__ == "__main__":
    main()
