"""The benchmark harness: limit, baseline and headwater measured in one run on this machine.

    make bench                      # or: .venv/bin/headwater bench [options]
    .venv/bin/python -m bench.run --quick

One broker of the benchmark's own (free loopback ports, scratch state); each side gets its own
topic holding the same records (same seed, same partitions) and its own lake, and runs in a
fresh Spark driver (bench/side.py). Results: bench/results/<time>.json, latest.json,
latest.md and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench import report
from bench.limit import consumer_limit
from bench.side import IDLE_REPORT_CONF, QUICK_SIDES, SIDES, orders, orders_source
from bench.workspace import local_broker, scratch_settings
from devstack.generator.producer import produce
from devstack.services.ports import free_port
from streaming.config import Settings
from streaming.errors import HeadwaterError
from streaming.kafka_client import ensure_topics

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    backlog: int  # records each side works off (throughput)
    rate: float  # records per second during the freshness phase
    seconds: float  # length of the freshness phase
    partitions: int  # of the benchmark topic
    batches: int  # the backlog spread over at least this many micro-batches

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        quick = Plan(backlog=6_000, rate=50, seconds=8, partitions=3, batches=3)
        full = Plan(backlog=200_000, rate=500, seconds=60, partitions=3, batches=10)
        base = quick if args.quick else full
        return Plan(
            backlog=args.backlog or base.backlog,
            rate=args.rate or base.rate,
            seconds=args.seconds or base.seconds,
            partitions=args.partitions or base.partitions,
            batches=base.batches,
        )


class Progress:
    """One line per step on stderr, with the time since the run started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kib / 1024**2, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "pyspark": version("pyspark"),
        "delta_spark": version("delta-spark"),
        "commit": commit,
    }


class Bench:
    """One benchmark run: its scratch directory, broker port and progress display."""

    def __init__(self, args: argparse.Namespace, progress: Progress) -> None:
        self.args = args
        self.progress = progress
        self.root = Path(tempfile.mkdtemp(prefix="headwater-bench-"))
        self.run_id = uuid.uuid4().hex[:6]
        self.port = free_port()

    def settings(self, label: str, plan: Plan) -> Settings:
        """A workspace `label` whose benchmark topic has the plan's partitions."""
        pipeline = yaml.safe_load((Path(self.args.conf) / "pipeline.yaml").read_text())
        sources = [
            {**s, "partitions": plan.partitions} if s["topic"].endswith("shop.orders") else s
            for s in pipeline["sources"]
        ]
        return scratch_settings(
            Path(self.args.conf),
            self.args.profile,
            self.root / label,
            kafka_port=self.port,
            spark_conf={**IDLE_REPORT_CONF, **dict(self.args.spark_conf or [])},
            topic_prefix=f"bench{self.run_id}{label.replace('-', '')}",
            pipeline={
                "sources": sources,
                "bronze": {"max_offsets_per_trigger": max(1, plan.backlog // plan.batches)},
            },
        )

    def fill(self, settings: Settings, plan: Plan) -> None:
        """The workspace's topics created, the benchmark topic holding the backlog."""
        ensure_topics(settings.profile.kafka, settings.pipeline.sources)
        topic = orders_source(settings).topic
        produce(settings.profile.kafka, orders(topic, seed=7), count=plan.backlog)

    def side(self, settings: Settings, side: str, plan: Plan, label: str) -> dict[str, Any]:
        """Run one side in a driver of its own (bench/side.py); its figures."""
        out = self.root / f"{label}.json"
        log = self.root / f"{label}.log"
        command = [
            sys.executable,
            "-m",
            "bench.side",
            "--conf",
            str(settings.conf_dir),
            "--profile",
            settings.profile_name,
            "--side",
            side,
            "--backlog",
            str(plan.backlog),
            "--rate",
            str(plan.rate),
            "--seconds",
            str(plan.seconds),
            "--out",
            str(out),
        ]
        self.progress.step(f"{label}: running (a Spark driver of its own)")
        with log.open("w") as sink:
            done = subprocess.run(
                command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO, check=False
            )
        if done.returncode != 0:
            tail = log.read_text().strip().splitlines()[-15:]
            raise HeadwaterError(f"benchmark side {label} failed (log {log}):\n" + "\n".join(tail))
        figures: dict[str, Any] = json.loads(out.read_text())
        fresh = ", ".join(
            f"{layer} p99 {f['p99']:.2f} s" for layer, f in figures["freshness_s"].items()
        )
        self.progress.step(
            f"{label}: {figures['throughput_rps']:.0f} records/s; at {plan.rate:g}/s {fresh}"
        )
        return figures

    def restart(self, plan: Plan) -> dict[str, Any]:
        """Seconds from a SIGKILLed `headwater run`'s restart to its first gold commit
        (bench/restart.py), at the plan's rate, in a driver of its own."""
        settings = self.settings("restart", plan)
        ensure_topics(settings.profile.kafka, settings.pipeline.sources)
        out = self.root / "restart.json"
        command = [
            sys.executable,
            "-m",
            "bench.restart",
            "--conf",
            str(settings.conf_dir),
            "--profile",
            settings.profile_name,
            "--rate",
            str(plan.rate),
            "--out",
            str(out),
        ]
        self.progress.step("restart: headwater run, SIGKILL, restart (drivers of their own)")
        done = subprocess.run(command, cwd=REPO, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise HeadwaterError(f"the restart measurement failed:\n{done.stderr[-2000:]}")
        figures: dict[str, Any] = json.loads(out.read_text())
        self.progress.step(
            f"restart: first gold commit {figures['restart_to_gold_s']:.1f} s after the restart "
            f"({figures['start_to_gold_s']:.1f} s after a first start)"
        )
        return figures

    def growth(self, plan: Plan) -> dict[str, Any]:
        """Throughput of baseline and bronze as the topic's partitions grow; the chain's
        freshness as the input rate grows (to the knee: until it no longer keeps up)."""
        by_partitions = []
        for partitions in (1, 2, 4, 8):
            step = Plan(plan.backlog, plan.rate, plan.seconds / 2, partitions, plan.batches)
            row: dict[str, Any] = {"partitions": partitions}
            for side in ("baseline", "bronze"):
                label = f"{side}-p{partitions}"
                settings = self.settings(label, step)
                self.fill(settings, step)
                row[side] = self.side(settings, side, step, label)["throughput_rps"]
            by_partitions.append(row)
        by_rate = []
        for rate in (plan.rate / 5, plan.rate / 2, plan.rate, plan.rate * 2, plan.rate * 4):
            step = Plan(plan.backlog // 10, rate, plan.seconds, plan.partitions, plan.batches)
            label = f"chain-r{rate:g}".replace(".", "_")
            settings = self.settings(label, step)
            self.fill(settings, step)
            figures = self.side(settings, "chain", step, label)
            by_rate.append(
                {
                    "rate": rate,
                    "kept_up": figures["kept_up"],
                    "freshness_s": {
                        layer: {q: f[q] for q in ("p50", "p95", "p99")}
                        for layer, f in figures["freshness_s"].items()
                    },
                }
            )
            if not figures["kept_up"]:
                break  # past the knee
        return {"throughput_by_partitions": by_partitions, "freshness_by_rate": by_rate}


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"write KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headwater bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in under 3 minutes")
    parser.add_argument("--backlog", type=int, help="records each side works off")
    parser.add_argument("--rate", type=float, help="records/s during the freshness phase")
    parser.add_argument("--seconds", type=float, help="length of the freshness phase")
    parser.add_argument("--partitions", type=int, help="partitions of the benchmark topic")
    parser.add_argument(
        "--sides",
        help=f"which sides to run, of {', '.join(SIDES)} (default: all; --quick: "
        f"{', '.join(QUICK_SIDES)}, the floors are measured by full runs)",
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--conf", default=str(REPO / "conf"))
    parser.add_argument("--profile", default="local")
    parser.add_argument("--keep", action="store_true", help="keep the scratch lake and logs")
    parser.add_argument(
        "--spark-conf",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="a Spark setting for every side's session (repeatable): an A/B of a setting",
    )
    parser.add_argument(
        "--no-restart",
        action="store_true",
        help="leave out the restart after SIGKILL (a full run measures it; --quick never does)",
    )
    parser.add_argument(
        "--no-growth",
        action="store_true",
        help="leave out throughput by partitions (1, 2, 4, 8) and freshness by input rate "
        "(a full run measures them; --quick never does)",
    )
    args = parser.parse_args(argv)
    plan = Plan.of(args)
    chosen = args.sides or ",".join(QUICK_SIDES if args.quick else SIDES)
    sides = [s for s in chosen.split(",") if s]
    unknown = set(sides) - set(SIDES)
    if unknown:
        parser.error(
            f"unknown side(s) {', '.join(sorted(unknown))}; choose from {', '.join(SIDES)}"
        )
    progress = Progress()
    bench = Bench(args, progress)
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "plan": plan.__dict__,
        "spark_conf": dict(args.spark_conf or []),
        "machine": machine(),
        "sides": {},
    }
    try:
        settings = {side: bench.settings(side, plan) for side in sides}
        with local_broker(next(iter(settings.values()))):
            progress.step(f"broker up on 127.0.0.1:{bench.port}; scratch {bench.root}")
            for side_settings in settings.values():
                bench.fill(side_settings, plan)
            progress.step(
                f"{plan.backlog} order events in each side's topic ({plan.partitions} partitions)"
            )
            first = next(iter(settings.values()))
            results["limit"] = consumer_limit(first, orders_source(first).topic, plan.backlog)
            progress.step(
                f"limit: {results['limit']['throughput_rps']:.0f} records/s (one consumer)"
            )
            for side in sides:
                results["sides"][side] = bench.side(settings[side], side, plan, side)
            if not (args.quick or args.no_restart):
                results["restart"] = bench.restart(plan)
            if not (args.quick or args.no_growth):
                results["growth"] = bench.growth(plan)
        results["seconds"] = round(time.monotonic() - progress.started, 1)
        results.update(report.verdict(results))
        written = report.write(results, Path(args.out), started)
        progress.step(f"results: {', '.join(str(p) for p in written)}")
    finally:
        if not args.keep:
            shutil.rmtree(bench.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
