"""Where one writer's micro-batches spend the driver's CPU: a Java Flight Recorder profile.

The writer (silver events, silver CDC or a gold table) is called on the demo's small batches,
as in `batch_cost.py`, warmed up, then recorded with JFR (`jcmd <pid> JFR.start`, the JDK's
own sampling profiler: no agent to install) over `--calls` calls. The samples are grouped by
the thread that took them (executor tasks, the driver's query threads, the DAG scheduler, ...)
and by what they were doing (`ACTIVITIES`: code generation, analysis, optimisation, Delta's
snapshot and commit work, task (de)serialisation, Parquet), counted inclusively: a sample
under both code generation and a task counts for each.

    .venv/bin/python -m bench.profile_writer --writer silver-events --calls 20
    .venv/bin/python -m bench.profile_writer --writer silver-cdc --set spark.sql.codegen.factoryMode=FALLBACK

Python's own share is reported beside it (`os.times()` of this process), as is the JVM's CPU
per call; the .jfr file stays for JDK Mission Control (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from bench.batch_cost import DemoBatches, cpu_seconds, gold_call
from bench.workspace import scratch_settings
from streaming.config import Settings
from streaming.gold.definitions import load_gold_tables, with_keys
from streaming.gold.maintain import GoldBatchWriter, ensure_gold_table
from streaming.session import build_spark_session
from streaming.tables import read_table

# What a sample was doing, by a frame on its stack (first match of each, inclusive).
ACTIVITIES: dict[str, tuple[str, ...]] = {
    "code generation (source, formatting, compiling)": (
        "catalyst.expressions.codegen.",
        "WholeStageCodegenExec.doCodeGen",
    ),
    "analysis": ("catalyst.analysis.",),
    "optimisation and physical planning": (
        "catalyst.optimizer.",
        "execution.SparkStrategies",
        "sql.execution.QueryExecution$.prepareForExecution",
        "execution.adaptive.",
    ),
    "plan strings (UI events, explain)": ("QueryExecution.explainString",),
    "Delta snapshot and log": (
        "sql.delta.Snapshot",
        "sql.delta.SnapshotManagement",
        "sql.delta.DeltaLog.",
    ),
    "Delta commit": ("sql.delta.OptimisticTransactionImpl.commit",),
    "task (de)serialisation": ("java.io.ObjectOutputStream", "java.io.ObjectInputStream"),
    "Parquet read/write": ("org.apache.parquet.",),
    "JIT compiler": ("C2Compiler", "C1Compiler"),
}
WRITERS = ("silver-events", "silver-cdc", "gold-customer_orders", "gold-revenue_per_minute")


@dataclass(frozen=True)
class Sample:
    thread: str  # the thread's name with numbers folded: "Executor task launch worker-N"
    frames: tuple[str, ...]  # innermost first: "package.Class.method"


def thread_kind(name: str) -> str:
    return re.sub(r"\d+", "N", name)


def parse_samples(text: str) -> list[Sample]:
    """`jfr print --events jdk.ExecutionSample` output as samples."""
    samples = []
    for event in text.split("jdk.ExecutionSample")[1:]:
        thread = re.search(r'sampledThread = "([^"]*)"', event)
        frames = tuple(re.findall(r"^\s+([\w$.<>/]+)\(", event, re.M))
        if frames:
            samples.append(Sample(thread_kind(thread.group(1) if thread else "?"), frames))
    return samples


def activity_of(frames: Iterable[str]) -> set[str]:
    found = set()
    for frame in frames:
        for activity, markers in ACTIVITIES.items():
            if activity not in found and any(m in frame for m in markers):
                found.add(activity)
    return found


def summarise(samples: list[Sample], top: int = 15) -> dict[str, Any]:
    """Shares of the samples by thread kind, by activity (inclusive) and the busiest frames."""
    total = len(samples)
    threads = Counter(s.thread for s in samples)
    activities: Counter[str] = Counter()
    by_thread_activity: Counter[tuple[str, str]] = Counter()
    for s in samples:
        for activity in activity_of(s.frames):
            activities[activity] += 1
            by_thread_activity[(s.thread, activity)] += 1
    own = Counter(s.frames[0] for s in samples)

    def share(n: int) -> float:
        return round(n / total, 3) if total else 0.0

    return {
        "samples": total,
        "threads": {t: share(n) for t, n in threads.most_common(top)},
        "activities": {a: share(activities[a]) for a in ACTIVITIES},
        "activities_by_thread": {
            f"{t}: {a}": share(n) for (t, a), n in by_thread_activity.most_common(top)
        },
        "top_frames": {f: share(n) for f, n in own.most_common(top)},
    }


def report(summary: dict[str, Any], per_call: dict[str, float]) -> str:
    lines = [
        f"{summary['samples']} samples; per call: {per_call['wall_s']:.2f} s wall, "
        f"{per_call['cpu_s']:.2f} CPU-s (driver JVM and Python), {per_call['python_cpu_s']:.2f} of them Python",
        "",
        "by thread:",
    ]
    lines += [f"  {v:6.1%}  {k}" for k, v in summary["threads"].items()]
    lines += ["", "by activity (inclusive: a sample may count under several):"]
    lines += [f"  {v:6.1%}  {k}" for k, v in summary["activities"].items()]
    lines += ["", "by thread and activity:"]
    lines += [f"  {v:6.1%}  {k}" for k, v in summary["activities_by_thread"].items()]
    lines += ["", "innermost frames:"]
    lines += [f"  {v:6.1%}  {k}" for k, v in summary["top_frames"].items()]
    return "\n".join(lines)


def writer_call(spark: SparkSession, settings: Settings, writer: str) -> Callable[[int], None]:
    """The chosen writer, every table it reads made and filled as in `batch_cost.py`, as a call
    on the demo's next small batch (20 order events, 2 customer changes, 20 gold keys)."""
    demo = DemoBatches.of(spark, settings)
    shop, changes = demo.shop, demo.changes
    events, apply = demo.event_writer(), demo.cdc_writer()
    apply(changes.next(500), 10_000)  # the customers' snapshot
    if writer == "silver-events":
        return lambda batch_id: events(shop.next(20), batch_id)
    if writer == "silver-cdc":
        return lambda batch_id: apply(changes.next(2), batch_id)
    for batch_id in range(10_000, 10_005):  # orders for the gold keys
        events(shop.next(20), batch_id)
    table = next(t for t in load_gold_tables(settings) if f"gold-{t.name}" == writer)
    ensure_gold_table(spark, settings, table)
    gold = GoldBatchWriter(settings, table)
    source = table.sources[0]
    frame = read_table(spark, settings, source.table)
    assert frame is not None
    return gold_call(gold, with_keys(frame, source).select(*gold.key_columns).limit(20))


def jcmd(pid: int, *command: str) -> None:
    subprocess.run(["jcmd", str(pid), *command], check=True, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writer", choices=WRITERS, default="silver-events")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--conf", default="conf")
    parser.add_argument("--profile", default="local")
    parser.add_argument("--out", default=None, help="folder for the .jfr and summary.json")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting to try"
    )
    args = parser.parse_args(argv)
    if shutil.which("jcmd") is None or shutil.which("jfr") is None:
        parser.error("jcmd and jfr (from the JDK 17 that runs Spark) must be on PATH")
    out = Path(args.out or tempfile.mkdtemp(prefix="headwater-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    settings = scratch_settings(
        Path(args.conf),
        args.profile,
        Path(tempfile.mkdtemp(prefix="headwater-profile-lake-")),
        spark_conf=dict(item.split("=", 1) for item in args.set),
    )
    spark = build_spark_session(settings, ui=False)
    call = writer_call(spark, settings, args.writer)
    for batch_id in range(args.warmup):
        call(batch_id)
    jvm = int(spark._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    recording = out / f"{args.writer}.jfr"
    jcmd(jvm, "JFR.start", "name=headwater", "settings=profile", f"filename={recording}")
    started, cpu_before, python_before = time.monotonic(), cpu_seconds(jvm), os.times()
    for batch_id in range(args.warmup, args.warmup + args.calls):
        call(batch_id)
    python_after = os.times()
    per_call = {
        "wall_s": (time.monotonic() - started) / args.calls,
        "cpu_s": (cpu_seconds(jvm) - cpu_before) / args.calls,
        "python_cpu_s": (
            python_after.user + python_after.system - python_before.user - python_before.system
        )
        / args.calls,
    }
    jcmd(jvm, "JFR.stop", "name=headwater")
    spark.stop()
    printed = subprocess.run(
        ["jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "128", str(recording)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    summary = summarise(parse_samples(printed))
    results = {"writer": args.writer, "settings": args.set, "per_call": per_call, **summary}
    (out / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(summary, per_call))
    print(f"\n{recording} (JDK Mission Control opens it); {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
