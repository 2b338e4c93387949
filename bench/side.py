"""One side of the benchmark in a Spark driver of its own (the harness runs each in a fresh
process, so CPU time and peak memory are that side's alone).

Sides, all on the same topic contents, partitions, trigger and session settings:
- baseline: Kafka -> Delta append of the raw records (key, value, coordinates), no parsing;
- bronze: headwater's bronze stream of the topic, with progress recording;
- chain: the demo configuration's every stream, bronze -> silver -> gold;
- floor: the least a three-hop chain costs here, Spark and Delta alone (bench/floor.py);
- fused: the floor's three writes in one query's batch, no Delta streams between them.

Phase 1 (throughput): the topic holds a backlog; the side's streams start and work it off.
Phase 2 (freshness): records arrive at a fixed rate for a fixed time while the streams run.

    python -m bench.side --conf DIR --side chain --backlog N --rate R --seconds T --out FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming.listener import StreamingQueryProgress
from pyspark.sql.streaming.query import StreamingQuery

from bench import floor, measure
from devstack.generator.producer import produce
from devstack.generator.shop import Record, ShopSimulator
from streaming.bronze import LAYER as BRONZE
from streaming.config import Settings, Source, load_settings
from streaming.delta_log import live_files, live_rows
from streaming.gold.definitions import load_gold_tables
from streaming.gold.maintain import LAYER as GOLD
from streaming.runner import LAYERS, run_streams
from streaming.session import build_spark_session

SIDES = ("baseline", "bronze", "chain", "floor", "fused")
CHAINS = ("chain", "floor", "fused")  # sides with a silver and a gold layer
FLOORS = ("floor", "fused")
QUICK_SIDES = ("baseline", "bronze", "chain")  # a smoke run's; the floors take a minute each
BASELINE_TABLE = "baseline"
START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
IDLE_TRIGGERS = 3  # idle triggers per query the idle phase waits for
# Spark reports a trigger without input once per this interval (default 10 s); a benchmark's
# sessions use 1 s so the idle phase is short. Batches with input are reported each time.
IDLE_REPORT_CONF = {"spark.sql.streaming.noDataProgressEventInterval": "1000"}


def orders_source(settings: Settings) -> Source:
    """The benchmark topic: the demo's orders topic (whatever prefix the workspace gave it)."""
    return next(s for s in settings.pipeline.sources if s.topic.endswith("shop.orders"))


def orders(topic: str, seed: int) -> Iterator[Record]:
    """The shop's order events alone, sent to `topic`."""
    for record in ShopSimulator(seed, START, rate=200.0, orders_topic=topic):
        if record.topic == topic:
            yield record


def start_baseline(spark: SparkSession, settings: Settings, source: Source) -> StreamingQuery:
    return floor.raw_append(
        spark,
        settings,
        source,
        BASELINE_TABLE,
        settings.table_path("bench", BASELINE_TABLE),
        settings.checkpoint_path("bench", BASELINE_TABLE),
    )


class Side:
    """Where a side's rows land and how to tell that a number of records went all the way."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.golds: dict[str, tuple[str, str]] = {}
        # The checkpoint of the query that writes every layer in one batch (the fused floor):
        # gold is visible when its batch has committed.
        self.fused_checkpoint: str | None = None
        self.gold_paths: dict[str, str] = {}
        if name in FLOORS:
            where = floor.paths(settings)
            self.entry, self.silver = where["bronze"][0], where["silver"][0]
            self.gold = where["gold"][0]
            if name == "floor":
                self.golds = {floor.GOLD: where["gold"]}
            else:
                self.fused_checkpoint = floor.fused_checkpoint(settings)
            return
        if name == "baseline":
            self.entry = settings.table_path("bench", BASELINE_TABLE)
        else:
            self.entry = settings.table_path(BRONZE, orders_source(settings).table_name)
        self.silver = settings.table_path("silver", "orders")
        if name == "chain":
            fed = [
                t
                for t in load_gold_tables(settings)
                if any(s.table == "silver.orders" for s in t.sources)
            ]
            self.gold_paths = {t.name: settings.table_path(GOLD, t.name) for t in fed}
            # Gold has a query per table in both topologies.
            self.golds = {
                t.name: (self.gold_paths[t.name], settings.checkpoint_path(GOLD, t.name))
                for t in fed
            }

    def landed(self, records: int) -> bool:
        """Whether `records` order events are visible in the side's last layer."""
        if self.name not in CHAINS:
            return (live_rows(self.entry) or 0) >= records
        if (live_rows(self.silver) or 0) < records:
            return False
        if self.fused_checkpoint is not None:  # gold is written in the batch that wrote silver
            return self.fused_done_ms() is not None
        last = measure.commits(self.silver)[-1].version
        return all(
            last in measure.visible_downstream_ms(checkpoint, self.silver)
            for _, checkpoint in self.golds.values()
        )

    def freshness_ms(self, since_ms: int) -> dict[str, list[measure.Sample]]:
        layers = {"bronze" if self.name == "bronze" else self.name: self.entry}
        if self.name in CHAINS:
            layers = {"bronze": self.entry, "silver": self.silver}
        found = {layer: measure.row_freshness_ms(path, since_ms) for layer, path in layers.items()}
        if self.fused_checkpoint is not None:
            found["gold"] = measure.kafka_batch_freshness_ms(
                self.fused_checkpoint, self.silver, since_ms, ("partition", "offset")
            )
        if self.golds:
            # A row is fresh in gold when every gold table it feeds shows it.
            checkpoints = [checkpoint for _, checkpoint in self.golds.values()]
            found["gold"] = measure.downstream_freshness_ms(self.silver, checkpoints, since_ms)
        return found

    def tables(self) -> dict[str, str]:
        if self.name not in CHAINS:
            return {self.name: self.entry}
        if self.name in FLOORS:
            return {
                "bronze": self.entry,
                f"silver.{floor.SILVER}": self.silver,
                f"gold.{floor.GOLD}": self.gold,
            }
        return {
            "bronze": self.entry,
            "silver.orders": self.silver,
            **{f"gold.{name}": path for name, path in self.gold_paths.items()},
        }

    def fused_done_ms(self) -> int | None:
        """When the fused query's batch that wrote silver's latest rows had committed (after
        its gold write); None while it has not."""
        assert self.fused_checkpoint is not None
        batches = measure.kafka_batches_committed(self.fused_checkpoint)
        last = measure.commits(self.silver)[-1]
        if not batches or not last.rows_added:
            return None
        # The batch whose commit is the first to land after silver's latest commit.
        return next((ms for _, ms in batches if ms >= last.landed_ms), None)


def wait_for(check: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Seconds until `check` held; TimeoutError naming `what` past the deadline."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > deadline_s:
            raise TimeoutError(f"{what}: not done after {deadline_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def progress_since(
    query: StreamingQuery, since: datetime, *, idle: bool = False
) -> list[StreamingQueryProgress]:
    """The query's progress events since `since`: its batches, or (`idle`) its triggers that
    found no new input."""
    return [
        p
        for p in query.recentProgress
        if (p.numInputRows == 0) == idle
        and datetime.fromisoformat(p.timestamp.replace("Z", "+00:00")) >= since
    ]


def batch_breakdown(
    queries: list[StreamingQuery], since: datetime, *, idle: bool = False
) -> dict[str, dict[str, float]]:
    """Per query, the median of each durationMs part over its batches (or idle triggers)
    since `since`."""
    found: dict[str, dict[str, float]] = {}
    for query in queries:
        batches = progress_since(query, since, idle=idle)
        if batches:
            parts = {key for p in batches for key in p.durationMs}
            found[query.name or str(query.id)] = {
                key: statistics.median(p.durationMs.get(key, 0) for p in batches)
                for key in sorted(parts)
            }
    return found


def run(
    side_name: str, settings: Settings, backlog: int, rate: float, seconds: float
) -> dict[str, Any]:
    spark = build_spark_session(settings, ui=False)
    jvm_pid = int(spark._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    side = Side(side_name, settings)
    source = orders_source(settings)
    stop = threading.Event()
    failure: list[BaseException] = []
    before = measure.process_usage(jvm_pid)
    started = time.monotonic()
    if side_name == "baseline":
        running = [start_baseline(spark, settings, source)]
    elif side_name == "floor":
        running = floor.start(spark, settings, source)
    elif side_name == "fused":
        running = floor.start_fused(spark, settings, source)
    else:
        layers = ["bronze"] if side_name == "bronze" else list(LAYERS)
        topics = [source.topic] if side_name == "bronze" else None

        def streams() -> None:
            try:
                run_streams(spark, settings, topics, stop=stop, layers=layers, owner="bench")
            except BaseException as exc:
                failure.append(exc)

        threading.Thread(target=streams, name="bench-streams", daemon=True).start()
        running = []

    def landed(records: int) -> Callable[[], bool]:
        def check() -> bool:
            if failure:
                raise RuntimeError(f"{side_name}: a stream failed: {failure[0]}")
            return side.landed(records)

        return check

    deadline = max(600.0, backlog / 100)
    wait_for(landed(backlog), deadline, f"{side_name}: the backlog of {backlog} records")
    drained_s = time.monotonic() - started
    after = measure.process_usage(jvm_pid)
    throughput, first_ms, done_ms = sustained_rate(side, backlog)

    # Phase 2: a fixed rate.
    since = datetime.now(UTC)
    since_ms = int(since.timestamp() * 1000)
    sent = produce(
        settings.profile.kafka, orders(source.topic, seed=11), rate=rate, seconds=seconds
    ).delivered
    try:
        wait_for(landed(backlog + sent), max(300.0, seconds * 5), "the fixed-rate records")
        caught_up = True
    except TimeoutError:
        caught_up = False  # the rows still missing are left out of the freshness figures
    queries = running or list(spark.streams.active)
    breakdown = batch_breakdown(queries, since)

    # Phase 3: idle. No input; every query still polls its source each trigger (Spark
    # reports such a trigger every noDataProgressEventInterval, 1 s in a benchmark's session).
    idle_since = datetime.now(UTC)
    # A query still busy with its last batch reports fewer idle triggers: what it did report.
    with contextlib.suppress(TimeoutError):
        wait_for(
            lambda: all(
                len(progress_since(q, idle_since, idle=True)) >= IDLE_TRIGGERS for q in queries
            ),
            60,
            "idle triggers",
        )
    idle = batch_breakdown(queries, idle_since, idle=True)
    end = measure.process_usage(jvm_pid)
    stop.set()
    for query in running:
        query.stop()
    samples = side.freshness_ms(since_ms)
    freshness = {layer: [fresh for _, fresh in found] for layer, found in samples.items()}
    last_layer = list(samples.values())[-1]
    # Lag stayed bounded: every record landed, and freshness did not worsen over the phase.
    kept_up = caught_up and not measure.lag_grew(last_layer)
    result = {
        "side": side_name,
        "backlog_records": backlog,
        "throughput_rps": round(throughput, 1),
        "drain_wall_s": round(drained_s, 2),
        "cpu_s_per_million": round((after.cpu_s - before.cpu_s) / backlog * 1e6, 1),
        "driver_peak_rss_mib": round(end.peak_rss_mib, 1),
        "fixed_rate_rps": rate,
        "fixed_rate_records": sent,
        "kept_up": kept_up,
        "freshness_s": {
            layer: {
                "p50": round(measure.percentile(values, 50) / 1000, 3),
                "p95": round(measure.percentile(values, 95) / 1000, 3),
                "p99": round(measure.percentile(values, 99) / 1000, 3),
                "rows": len(values),
                "cdf": [round(measure.percentile(values, q) / 1000, 3) for q in range(0, 101)],
            }
            for layer, values in freshness.items()
        },
        "batch_ms_at_fixed_rate": breakdown,
        "batch_ms_at_idle": idle,
        "files_at_end": {name: live_files(path) for name, path in side.tables().items()},
        "throughput_over_time": [
            [round((c.landed_ms - first_ms) / 1000, 2), c.rows_added]
            for c in measure.commits(side.silver if side_name in CHAINS else side.entry)
            if c.rows_added and first_ms <= c.landed_ms <= done_ms
        ],
    }
    spark.stop()
    return result


def sustained_rate(side: Side, records: int) -> tuple[float, int, int]:
    """(records/s, first commit landed ms, done ms) of working off a backlog of `records`.

    Measured after the first micro-batch, which also pays for the stream's start (Kafka
    consumers, cold code): the backlog's later rows over the time from the first commit to
    the last. For the chain, the rows counted land in silver, and the clock stops when every
    gold table covers silver's last commit of them."""
    table = side.silver if side.name in CHAINS else side.entry
    history = [c for c in measure.commits(table) if c.rows_added]
    rows, last = 0, None
    for commit in history:
        rows += commit.rows_added
        if rows >= records:
            last = commit
            break
    if last is None or last is history[0]:
        raise ValueError(f"{table}: the backlog of {records} rows did not span two commits")
    done = last.landed_ms
    if side.fused_checkpoint is not None:
        done = side.fused_done_ms() or done
    if side.golds:
        done = max(
            measure.visible_downstream_ms(checkpoint, side.silver)[last.version]
            for _, checkpoint in side.golds.values()
        )
    first = history[0]
    return (records - first.rows_added) / ((done - first.landed_ms) / 1000), first.landed_ms, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", required=True)
    parser.add_argument("--profile", default="local")
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--backlog", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    settings = load_settings(args.conf, args.profile, environ={})
    result = run(args.side, settings, args.backlog, args.rate, args.seconds)
    with open(args.out, "w") as out:
        json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
