"""Table maintenance over a long run: data files, Delta log files and a fixed gold query's time,
with and without the maintenance job.

    .venv/bin/python -m bench.maintenance_run [--minutes 20] [--every 5] [--sample 30]
        [--rate 200] [--retention-hours 1] [--out bench/results]

Two runs, one after the other, each with a lake, topics and Spark drivers of its own (the
benchmark's own broker; the demo's .headwater/ is not touched). In each, the demo
configuration's every stream runs in one driver (bronze -> silver -> gold, as the harness's
chain side) while the demo's generator feeds it at a fixed rate (shop orders and payments at
`--rate`, customer changes at a tenth of it, the demo's faults included) for `--minutes`.
The "with" run also runs the maintenance job as the Dagster schedule runs it: the job's own
entry point (streaming/jobs/maintenance.py, the function the `maintain_tables` op calls) in a
process of its own, every `--every` minutes (production: hourly; the benchmark compresses the
schedule), and once before the streams start, which is the only time it may set the tables'
retention. Every `--sample` seconds: live data files, data files on disk and Delta log files
per table (read from the log, no Spark), and the time of a fixed gold query in an analyst's
warm Spark session of its own (QUERY; median of 3 executions, each reading the tables afresh).

Results: bench/results/maintenance-<time>.json, maintenance-latest.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import write_results
from bench.run import Progress, machine
from bench.workspace import local_broker, scratch_settings
from devstack.services.ports import free_port
from streaming.catalog import pipeline_tables
from streaming.config import SAFE_VACUUM_HOURS, Settings, load_settings
from streaming.delta_log import COMMIT, DeltaLogError, live_files, live_rows, local_path
from streaming.errors import HeadwaterError

REPO = Path(__file__).resolve().parent.parent
RUNS = ("without", "with")
TAG = "bench-maintenance "  # how a worker's messages start on its stdout (Spark prints there too)
SEED = 7
EXECUTIONS = 3  # of the gold query per sample
# The analyst's question, fixed: the ten best customers by revenue, with their share of the
# last hour's revenue (the hour before the newest minute in gold; currencies summed as stored).
QUERY = """
WITH last_hour AS (
  SELECT sum(revenue) AS revenue, sum(orders_placed) AS orders
  FROM revenue_per_minute
  WHERE minute > (SELECT max(minute) FROM revenue_per_minute) - INTERVAL 1 HOUR
)
SELECT c.customer_id, c.name, c.segment, c.orders_placed, c.revenue,
       round(c.revenue / h.revenue, 4) AS share_of_last_hour, h.orders AS orders_last_hour
FROM customer_orders c CROSS JOIN last_hour h
ORDER BY c.revenue DESC, c.customer_id
LIMIT 10
""".strip()
QUERY_VIEWS = {
    "customer_orders": "gold.customer_orders",
    "revenue_per_minute": "gold.revenue_per_minute",
}


@dataclass(frozen=True)
class Plan:
    minutes: float
    every_minutes: float
    sample_s: float
    rate: float  # shop records (orders and payments) per second
    retention_hours: int
    tables: tuple[str, ...] = ()  # the tables maintenance runs on (empty: every table)

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    @property
    def cdc_rate(self) -> float:
        return max(self.rate / 10, 1.0)  # as the demo: customers change a tenth as often

    @property
    def window_s(self) -> float:
        """The first and last quarter of the run, whose query times the summary compares."""
        return self.seconds / 4

    def maintenance_conf(self) -> dict[str, Any]:
        """conf's maintenance block for the benchmark: every table, retention shortened."""
        hours = self.retention_hours
        return {
            "enabled": True,
            "optimize": True,
            "allow_short_retention": hours < SAFE_VACUUM_HOURS,
            "vacuum_retention_hours": hours,
            "log_retention": f"{hours} hours",
            "tables": {},
        }


# --- the workers: a streaming driver and an analyst, each a process of its own ---------------


def emit(message: dict[str, Any]) -> None:
    print(TAG + json.dumps(message), flush=True)


def chain_worker(settings: Settings) -> None:
    """Create every table (the streams once with availableNow, on empty topics), say so, and
    on 'go' run every stream until 'stop' (or the end of stdin)."""
    from streaming.runner import run_streams
    from streaming.session import build_spark_session

    spark = build_spark_session(settings, ui=False)
    run_streams(spark, settings, available_now=True, owner="bench: tables created")
    emit({"ready": True})
    if sys.stdin.readline().strip() != "go":
        return
    stop = threading.Event()

    def until_stop() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=until_stop, name="commands", daemon=True).start()
    try:
        rows = run_streams(spark, settings, stop=stop, owner="bench: maintenance run")
    except HeadwaterError as exc:
        emit({"failed": str(exc)})
        raise
    emit({"done": rows})
    spark.stop()


def gold_query(spark: Any, paths: dict[str, str]) -> int:
    """QUERY over the gold tables as they are now: each table read afresh (its snapshot
    loaded from the log), the rows collected; returns how many."""
    for view, path in paths.items():
        spark.read.format("delta").load(path).createOrReplaceTempView(view)
    return len(spark.sql(QUERY).collect())


def analyst_worker(settings: Settings) -> None:
    """On 'query <n>', run QUERY n times and answer with each execution's seconds."""
    from streaming.session import build_spark_session

    spark = build_spark_session(settings, ui=False)
    paths = {view: settings.table_path_by_name(name) for view, name in QUERY_VIEWS.items()}
    emit({"ready": True})
    for line in sys.stdin:
        command, _, count = line.strip().partition(" ")
        if command != "query":
            break
        seconds: list[float] = []
        failures: list[str] = []
        rows = 0
        for _ in range(int(count or EXECUTIONS)):
            started = time.perf_counter()
            try:
                rows = gold_query(spark, paths)
            except Exception as exc:  # e.g. a file deleted under the query: counted, reported
                failures.append((str(exc).strip().splitlines() or [repr(exc)])[0][:300])
                print(f"gold query failed: {failures[-1]}", file=sys.stderr, flush=True)
                continue
            seconds.append(time.perf_counter() - started)
        emit({"seconds": seconds, "rows": rows, "failures": failures})
    spark.stop()


class Worker:
    """A worker process of this module: commands on its stdin, TAG lines from its stdout."""

    def __init__(self, role: str, settings: Settings, log: Path) -> None:
        self.role = role
        self.log = log
        self._sink = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.maintenance_run",
                "--role",
                role,
                "--conf",
                str(settings.conf_dir),
                "--profile",
                settings.profile_name,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._sink,
            text=True,
            cwd=REPO,
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, name=f"{role}-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(TAG):
                self.messages.put(json.loads(line[len(TAG) :]))
            elif not self._sink.closed:
                self._sink.write(line)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def receive(self, timeout_s: float, what: str) -> dict[str, Any]:
        """The worker's next message; HeadwaterError when it died or took too long."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                return self.messages.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.messages.empty():
                    raise HeadwaterError(self._ended(what)) from None
        raise HeadwaterError(
            f"{self.role}: no answer to {what} after {timeout_s:.0f} s ({self.log})"
        )

    def failure(self) -> str | None:
        """Why the worker stopped early, if it did."""
        if self.process.poll() is None:
            return None
        return self._ended("the run")

    def _ended(self, what: str) -> str:
        tail = self.log.read_text().strip().splitlines()[-12:]
        return (
            f"{self.role} ended (exit {self.process.returncode}) during {what}; log {self.log}:\n"
            + "\n".join(tail)
        )

    def close(self, command: str, timeout_s: float = 120) -> None:
        """Send `command` (if it still listens), then wait for the end; kill it past the
        timeout."""
        try:
            if self.process.poll() is None:
                self.send(command)
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:  # it closed its stdin already: it is ending
            pass
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._sink.close()


# --- what the benchmark reads back without Spark -------------------------------------------


def data_files_on_disk(location: str) -> int:
    """Parquet data files under the table's directory, referenced or not (what VACUUM deletes)."""
    root = local_path(location)
    return sum(
        1
        for path in root.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)
    )


def log_files(location: str) -> int:
    """Delta log files: JSON commits and checkpoint Parquet files."""
    log = local_path(location) / "_delta_log"
    return sum(
        1
        for path in log.iterdir()
        if COMMIT.match(path.name) or (".checkpoint" in path.name and path.suffix == ".parquet")
    )


def table_files(tables: dict[str, str]) -> dict[str, dict[str, int | None]]:
    """For each table that exists: live data files, data files on disk, Delta log files."""
    found: dict[str, dict[str, int | None]] = {}
    for name, path in tables.items():
        if (local_path(path) / "_delta_log").is_dir():
            found[name] = _files(path)
    return found


def _files(path: str, attempts: int = 3) -> dict[str, int | None]:
    failed = 0
    while True:
        try:
            try:
                live = live_files(path)
            except DeltaLogError:
                live = None
            return {"live": live, "on_disk": data_files_on_disk(path), "log": log_files(path)}
        except FileNotFoundError:  # log cleanup or VACUUM deleted a file as it was read
            failed += 1
            if failed == attempts:
                raise


def history_operations(location: str) -> Counter[str]:
    """Operations of the commits the table's log still holds, by name (OPTIMIZE, VACUUM END...)."""
    counts: Counter[str] = Counter()
    log = local_path(location) / "_delta_log"
    for path in sorted(log.glob("*.json")):
        if not COMMIT.match(path.name):
            continue
        for line in path.read_text().splitlines():
            if '"commitInfo"' in line:
                counts[json.loads(line)["commitInfo"].get("operation", "?")] += 1
    return counts


# --- one run -------------------------------------------------------------------------------


@dataclass
class MaintenanceRun:
    """One run of the maintenance job, in a process of its own."""

    number: int
    started_s: float  # since the streams were told to start (negative: before)
    results: Path
    log: Path
    process: subprocess.Popen[bytes]
    ended_s: float | None = None

    def record(self) -> dict[str, Any]:
        tables = (
            [json.loads(line) for line in self.results.read_text().splitlines() if line.strip()]
            if self.results.is_file()
            else []
        )
        return {
            "number": self.number,
            "started_s": round(self.started_s, 1),
            "seconds": None if self.ended_s is None else round(self.ended_s - self.started_s, 1),
            "exit_code": self.process.returncode,
            "streams_running": self.started_s >= 0,
            "tables": tables,
        }


@dataclass
class Run:
    """One run of the benchmark: its workspace, workers and what was sampled."""

    label: str
    settings: Settings
    root: Path
    prefix: str
    plan: Plan
    progress: Progress
    samples: list[dict[str, Any]] = field(default_factory=list)
    maintenance: list[MaintenanceRun] = field(default_factory=list)
    skipped_ticks: list[float] = field(default_factory=list)
    query_failures: list[str] = field(default_factory=list)
    rows_at_last_sample: dict[str, int | None] = field(default_factory=dict)
    _tables: dict[str, str] = field(default_factory=dict)
    _qualified: dict[str, str] = field(default_factory=dict)

    @property
    def maintained(self) -> bool:
        return self.label == "with"

    def tables(self) -> dict[str, str]:
        """Every table of the pipeline by its display name (the run's topic prefix left out)."""
        if not self._tables:
            for table in pipeline_tables(self.settings):
                self._tables[self.display(table.qualified)] = table.path
                self._qualified[self.display(table.qualified)] = table.qualified
        return self._tables

    def maintained_tables(self) -> list[str]:
        """The plan's tables as the job names them; HeadwaterError for a table not in the
        pipeline."""
        known = self.tables()
        unknown = [name for name in self.plan.tables if name not in known]
        if unknown:
            raise HeadwaterError(
                f"no table {', '.join(unknown)} in the pipeline: choose from {', '.join(known)}"
            )
        return [self._qualified[name] for name in self.plan.tables]

    def display(self, qualified: str) -> str:
        return qualified.replace(f"{self.prefix}_", "")

    def start_maintenance(self, at_s: float) -> MaintenanceRun:
        number = len(self.maintenance)
        results = self.root / f"maintenance-{number}.jsonl"
        log = self.root / f"maintenance-{number}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streaming.jobs.maintenance",
                    "--conf",
                    str(self.settings.conf_dir),
                    "--profile",
                    self.settings.profile_name,
                    "--results",
                    str(results),
                    *(arg for name in self.maintained_tables() for arg in ("--table", name)),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        run = MaintenanceRun(number, at_s, results, log, process)
        self.maintenance.append(run)
        return run

    def sample(self, at_s: float, analyst: Worker, *, last: bool = False) -> None:
        files = table_files(self.tables())
        if last:  # how far the streams got: rows per table, against the records sent
            self.rows_at_last_sample = {name: _rows(path) for name, path in self.tables().items()}
        analyst.send(f"query {EXECUTIONS}")
        answer = analyst.receive(300, "the gold query")
        self.query_failures += answer["failures"]
        seconds = answer["seconds"]
        self.samples.append(
            {
                "t_s": round(at_s, 1),
                "files": files,
                "query_s": round(statistics.median(seconds), 4) if seconds else None,
                "query_runs_s": [round(s, 4) for s in seconds],
                "query_rows": answer["rows"],
                "maintenance_running": any(m.ended_s is None for m in self.maintenance),
            }
        )
        total = sum(f["live"] or 0 for f in files.values())
        query = f"{statistics.median(seconds):.2f} s" if seconds else "failed"
        self.progress.step(
            f"{self.label} t={at_s:5.0f}s: {total} live data files, gold query {query}"
        )

    def execute(self, shop_feed: Callable[[threading.Event], dict[str, int]]) -> dict[str, Any]:
        """Run the streams, feed, sample and (with) maintain for the plan's minutes."""
        plan = self.plan
        self.maintained_tables()  # a table the pipeline does not have fails here, not later
        chain = Worker("chain", self.settings, self.root / "chain.log")
        analyst = Worker("analyst", self.settings, self.root / "analyst.log")
        stop = threading.Event()
        sent: dict[str, int] = {}
        feeder: threading.Thread | None = None
        try:
            chain.receive(900, "creating the tables")
            analyst.receive(900, "starting")
            analyst.send(f"query {EXECUTIONS}")  # warm-up: the session's first queries
            analyst.receive(300, "the warm-up query")
            if self.maintained:
                self.progress.step(f"{self.label}: maintenance before the streams start")
                before = time.monotonic()
                first = self.start_maintenance(0.0)
                first.process.wait()
                first.started_s, first.ended_s = before - time.monotonic(), 0.0
                self.progress.step(f"{self.label}: {self._described(first)}")
            self.progress.step(f"{self.label}: streams and generator start")
            chain.send("go")
            started = time.monotonic()

            def feed() -> None:
                sent.update(shop_feed(stop))

            feeder = threading.Thread(target=feed, name="generator", daemon=True)
            feeder.start()
            every = plan.every_minutes * 60
            next_sample, next_tick = 0.0, every
            while True:
                now = time.monotonic() - started
                for m in self.maintenance:
                    if m.ended_s is None and m.process.poll() is not None:
                        m.ended_s = now
                        self.progress.step(f"{self.label}: {self._described(m)}")
                if (failure := chain.failure()) is not None:
                    raise HeadwaterError(failure)
                if self.maintained and now >= next_tick and next_tick < plan.seconds:
                    if any(m.ended_s is None for m in self.maintenance):
                        self.skipped_ticks.append(round(next_tick, 1))  # the last one still runs
                    else:
                        self.progress.step(f"{self.label}: maintenance run at t={now:.0f}s")
                        self.start_maintenance(now)
                    next_tick = _next(now, every)  # a late tick runs once, as Dagster's would
                if now >= next_sample:
                    self.sample(now, analyst, last=next_sample >= plan.seconds)
                    if next_sample >= plan.seconds:
                        break
                    next_sample = min(
                        _next(time.monotonic() - started, plan.sample_s), plan.seconds
                    )
                stop.wait(max(0.0, min(next_sample, next_tick) - (time.monotonic() - started)))
            stop.set()
            feeder.join(timeout=120)
            for m in self.maintenance:
                if m.ended_s is None:
                    self.progress.step(f"{self.label}: waiting for maintenance run {m.number}")
                    m.process.wait()
                    m.ended_s = time.monotonic() - started
                    self.progress.step(f"{self.label}: {self._described(m)}")
            chain.send("stop")
            ended = chain.receive(300, "stopping the streams")
            if "failed" in ended:
                raise HeadwaterError(f"chain: a stream failed: {ended['failed']}")
        finally:
            stop.set()
            chain.close("stop")
            analyst.close("quit")
            for m in self.maintenance:
                if m.process.poll() is None:
                    m.process.kill()
                    m.process.wait()
        tables = self.tables()
        return {
            "records_sent": sent,
            "rows_at_last_sample": self.rows_at_last_sample,
            "samples": self.samples,
            "maintenance_runs": [m.record() for m in self.maintenance],
            "skipped_ticks_s": self.skipped_ticks,
            "query_failures": self.query_failures,
            "history_at_end": {
                name: dict(history_operations(path))
                for name, path in tables.items()
                if (local_path(path) / "_delta_log").is_dir()
            },
        }

    def _described(self, m: MaintenanceRun) -> str:
        done = m.record()["tables"]
        compacted = sum(t.get("files_compacted", 0) for t in done)
        written = sum(t.get("files_written", 0) for t in done)
        vacuumed = sum(t.get("files_vacuumed") or 0 for t in done)
        return (
            f"maintenance run {m.number} ended (exit {m.process.returncode}) after "
            f"{(m.ended_s or 0) - m.started_s:.0f} s: {len(done)} tables, OPTIMIZE compacted "
            f"{compacted} files into {written}, VACUUM deleted {vacuumed}"
        )


def _next(now: float, period: float) -> float:
    """The first multiple of `period` after `now`."""
    return period * (math.floor(now / period) + 1)


def _rows(path: str) -> int | None:
    try:
        return live_rows(path)
    except DeltaLogError:
        return None


def shop_feed(settings: Settings, plan: Plan) -> Callable[[threading.Event], dict[str, int]]:
    """The demo's generator for the run's topics: shop orders and payments at the plan's rate,
    customer changes (Debezium's envelope, as the demo writes it without a database) at a tenth
    of it, the demo's faults on; returns records delivered per feed when `stop` is set."""
    from devstack.generator.customers import CustomerChanges
    from devstack.generator.producer import produce
    from devstack.generator.shop import FaultRates, ShopSimulator

    def topic(suffix: str) -> str:
        return next(s.topic for s in settings.pipeline.sources if s.topic.endswith(suffix))

    def run(stop: threading.Event) -> dict[str, int]:
        now = datetime.now(UTC)
        faults = FaultRates.parse("all")
        kafka = settings.profile.kafka
        shop = ShopSimulator(
            SEED,
            now,
            rate=plan.rate,
            faults=faults,
            orders_topic=topic("shop.orders"),
            payments_topic=topic("shop.payments"),
        )
        changes = CustomerChanges(
            SEED, now, rate=plan.cdc_rate, faults=faults, topic=topic("shop.public.customers")
        )
        sent: dict[str, int] = {}

        def customers() -> None:
            sent["customers"] = produce(kafka, changes, rate=plan.cdc_rate, stop=stop).delivered

        side = threading.Thread(target=customers, name="generator-customers", daemon=True)
        side.start()
        sent["shop"] = produce(kafka, shop, rate=plan.rate, stop=stop).delivered
        side.join(timeout=120)
        return sent

    return run


# --- the summary and the files -------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Files at the end per table, the query's median time in the run's first and last
    quarter, how far the streams got, and what maintenance did per table, for both runs."""
    runs = results["runs"]
    window = results["plan"]["window_s"]
    seconds = results["plan"]["seconds"]
    at_end = {label: run["samples"][-1]["files"] for label, run in runs.items()}
    names = list(dict.fromkeys(name for files in at_end.values() for name in files))
    files = {
        name: {
            kind: {label: at_end[label].get(name, {}).get(kind) for label in runs}
            for kind in ("live", "on_disk", "log")
        }
        for name in names
    }
    totals = {
        kind: {label: sum(f.get(kind) or 0 for f in at_end[label].values()) for label in runs}
        for kind in ("live", "on_disk", "log")
    }
    query = {
        label: {
            "first": _median(
                [s["query_s"] for s in run["samples"] if s["query_s"] and s["t_s"] <= window]
            ),
            "last": _median(
                [
                    s["query_s"]
                    for s in run["samples"]
                    if s["query_s"] and s["t_s"] >= seconds - window
                ]
            ),
            "failures": len(run["query_failures"]),
        }
        for label, run in runs.items()
    }
    streams = {
        label: {
            "records_sent": sum(run["records_sent"].values()),
            "in_bronze_at_last_sample": sum(
                rows or 0
                for name, rows in run["rows_at_last_sample"].items()
                if name.startswith("bronze.")
            ),
        }
        for label, run in runs.items()
    }
    return {
        "files_at_end": files,
        "totals_at_end": totals,
        "query_s": query,
        "streams": streams,
        "maintenance": did(runs),
    }


def did(runs: dict[str, Any]) -> dict[str, Any]:
    """Per table, over the maintenance runs: OPTIMIZE and VACUUM totals, skips, notes; and the
    maintenance operations the table's Delta log holds at the end."""
    run = runs.get("with")
    if not run:
        return {}
    by_table: dict[str, dict[str, Any]] = {}
    for m in run["maintenance_runs"]:
        for t in m["tables"]:
            name = t["table"].replace(f"{run['prefix']}_", "")
            entry = by_table.setdefault(
                name,
                {
                    "runs": 0,
                    "optimized": 0,
                    "files_compacted": 0,
                    "files_written": 0,
                    "files_vacuumed": 0,
                    "bytes_vacuumed": 0,
                    "errors": [],
                    "skipped": [],
                    "notes": [],
                },
            )
            entry["runs"] += 1
            if "error" in t:
                entry["errors"].append(t["error"])
                continue
            if t.get("skipped"):
                entry["skipped"].append(t["skipped"])
                continue
            entry["optimized"] += 1 if t["files_compacted"] else 0
            entry["files_compacted"] += t["files_compacted"]
            entry["files_written"] += t["files_written"]
            entry["files_vacuumed"] += t["files_vacuumed"] or 0
            entry["bytes_vacuumed"] += t["bytes_vacuumed"] or 0
            for note in t["notes"]:
                if (short := _short_note(note)) not in entry["notes"]:
                    entry["notes"].append(short)
    for name, operations in run["history_at_end"].items():
        kept = {op: n for op, n in operations.items() if op in MAINTENANCE_OPERATIONS}
        by_table.setdefault(name, {})["history_at_end"] = kept
    return by_table


MAINTENANCE_OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES")


def _short_note(note: str) -> str:
    for start, short in (
        ("OPTIMIZE waits", "OPTIMIZE waited: the table's stream reads what it writes"),
        ("retention stays", "retention unchanged: a property change would fail the stream"),
        ("VACUUM waits", "VACUUM waited: the table's retention is shorter than conf's"),
    ):
        if note.startswith(start):
            return short
    return note[:160]


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: the setting, files per table at the end, the gold query's
    time, what maintenance did."""
    plan, machine, s = results["plan"], results["machine"], results["summary"]
    window_min = plan["window_s"] / 60
    with_run = results["runs"].get("with", {})
    maintained = with_run.get("maintenance_runs", [])
    lines = [
        f"Table maintenance benchmark {results['started']} (commit {machine['commit']}, "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB): the demo chain (every stream "
        f"in one driver) fed {plan['rate']:g} shop records/s and {plan['cdc_rate']:g} customer "
        f"changes/s for {plan['minutes']:g} min, without and with the maintenance job every "
        f"{plan['every_minutes']:g} min (production: hourly, compressed here) and once before "
        f"the streams start; retention {plan['retention_hours']} h; "
        + (f"tables {', '.join(plan['tables'])}" if plan["tables"] else "every table")
        + f". Samples every {plan['sample_s']:g} s.",
        "",
        "| table | live data files at end (without / with) | data files on disk | "
        "Delta log files |",
        "|---|---|---|---|",
    ]

    def pair(values: dict[str, Any]) -> str:
        return " / ".join("-" if values.get(r) is None else str(values[r]) for r in RUNS)

    for name, kinds in s["files_at_end"].items():
        lines.append(
            f"| {name} | {pair(kinds['live'])} | {pair(kinds['on_disk'])} | {pair(kinds['log'])} |"
        )
    t = s["totals_at_end"]
    lines += [
        f"| **all tables** | {pair(t['live'])} | {pair(t['on_disk'])} | {pair(t['log'])} |",
        "",
        f"Gold query (median of {EXECUTIONS} executions per sample, a warm analyst session of its "
        f"own, tables read afresh each time), seconds, median over the run's first and last "
        f"{window_min:.3g} min:",
        "",
        "| run | first | last | failed executions |",
        "|---|---|---|---|",
    ]
    for label in RUNS:
        q = s["query_s"].get(label)
        if q:
            first = "-" if q["first"] is None else f"{q['first']:.3f}"
            last = "-" if q["last"] is None else f"{q['last']:.3f}"
            lines.append(f"| {label} | {first} | {last} | {q['failures']} |")
    kept = [
        f"{label} {f['in_bronze_at_last_sample']:,} of {f['records_sent']:,}"
        for label, f in s["streams"].items()
    ]
    lines += [
        "",
        "How far the streams got: records in bronze at the last sample, of those the generator "
        f"sent by then: {'; '.join(kept)}.",
    ]
    running = [m for m in maintained if m["streams_running"]]
    took = [m["seconds"] for m in running if m["seconds"] is not None]
    lines += [
        "",
        f"What maintenance did: {len(maintained)} runs ({len(running)} while the streams ran"
        + (f", {statistics.median(took):.0f} s each at the median" if took else "")
        + (
            f"; {len(with_run.get('skipped_ticks_s', []))} ticks skipped while one still ran"
            if with_run.get("skipped_ticks_s")
            else ""
        )
        + "). While a table's stream runs it compacts only tables the stream appends to "
        "blindly, and changes no retention.",
        "",
        "| table | runs that compacted | files compacted -> written | VACUUM deleted | "
        "in the Delta log at the end | notes |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in s["maintenance"].items():
        if "runs" not in d:
            continue
        history = ", ".join(f"{op} {n}" for op, n in d.get("history_at_end", {}).items())
        notes = "; ".join(d["notes"] + d["skipped"] + d["errors"])
        lines.append(
            f"| {name} | {d['optimized']} of {d['runs']} | {d['files_compacted']} -> "
            f"{d['files_written']} | {d['files_vacuumed']} files | {history or '-'} | {notes} |"
        )
    lines += ["", "The query:", "", "```sql", QUERY, "```"]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path:
    """Live data files, data files on disk, Delta log files (all tables) and the gold query's
    time over the run, both runs; the maintenance runs shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = (
        (axes[0][0], "live", "live data files (all tables)"),
        (axes[0][1], "on_disk", "data files on disk (all tables)"),
        (axes[1][0], "log", "Delta log files (all tables)"),
    )
    colors = {"without": "tab:gray", "with": "tab:blue"}
    for label, run in results["runs"].items():
        minutes = [s["t_s"] / 60 for s in run["samples"]]
        for ax, kind, title in panels:
            ax.plot(
                minutes,
                [sum(f.get(kind) or 0 for f in s["files"].values()) for s in run["samples"]],
                marker=".",
                color=colors[label],
                label=f"{label} maintenance",
            )
            ax.set_title(title)
        axes[1][1].plot(
            minutes,
            [s["query_s"] if s["query_s"] is not None else math.nan for s in run["samples"]],
            marker=".",
            color=colors[label],
            label=f"{label} maintenance",
        )
        for m in run["maintenance_runs"]:
            if m["streams_running"] and m["seconds"] is not None:
                start = m["started_s"] / 60
                end = min(start + m["seconds"] / 60, results["plan"]["minutes"])
                for ax in axes.flat:
                    ax.axvspan(start, end, color="tab:blue", alpha=0.08)
    axes[1][1].set_title(f"gold query, median of {EXECUTIONS} (s)")
    axes[1][1].set_ylim(bottom=0)
    for ax in axes.flat:
        ax.set_xlim(0, results["plan"]["minutes"] * 1.1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("minutes since the streams started (shaded: maintenance running)")
    fig.suptitle(
        f"Table maintenance every {results['plan']['every_minutes']:g} min, "
        f"{results['plan']['rate']:g} shop records/s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(results: dict[str, Any], folder: Path, started: datetime) -> list[Path]:
    """maintenance-<time>.json, maintenance-latest.json, .md and .png in `folder`."""
    written = write_results(results, markdown(results), folder, started, "maintenance-")
    return [*written, plot(results, folder / "maintenance-latest.png")]


# --- the command ---------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    plan = Plan(
        args.minutes, args.every, args.sample, args.rate, args.retention_hours, tuple(args.table)
    )
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "plan": {
            **plan.__dict__,
            "seconds": plan.seconds,
            "cdc_rate": plan.cdc_rate,
            "window_s": plan.window_s,
            "maintenance_conf": plan.maintenance_conf(),
            "query": QUERY,
            "executions_per_sample": EXECUTIONS,
        },
        "machine": machine(),
        "runs": {},
    }
    root = Path(tempfile.mkdtemp(prefix="headwater-bench-maintenance-"))
    run_id = uuid.uuid4().hex[:6]
    port = free_port()
    try:
        workspaces = {
            label: scratch_settings(
                Path(args.conf),
                args.profile,
                root / label,
                kafka_port=port,
                topic_prefix=f"maint{run_id}{label}",
                pipeline={"maintenance": plan.maintenance_conf()},
            )
            for label in RUNS
        }
        from streaming.kafka_client import ensure_topics

        with local_broker(workspaces[RUNS[0]]):
            progress.step(f"broker up on 127.0.0.1:{port}; scratch {root}")
            for label, settings in workspaces.items():
                ensure_topics(settings.profile.kafka, settings.pipeline.sources)
                prefix = f"maint{run_id}{label}"
                run = Run(label, settings, root / label, prefix, plan, progress)
                progress.step(f"{label} maintenance: {plan.minutes:g} min")
                found = run.execute(shop_feed(settings, plan))
                results["runs"][label] = {"prefix": prefix, **found}
        results["seconds"] = round(time.monotonic() - progress.started, 1)
        results["summary"] = summary(results)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.maintenance_run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="length of each run")
    parser.add_argument(
        "--every", type=float, default=5.0, help="minutes between maintenance runs (with)"
    )
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="shop records per second (the demo's default)"
    )
    parser.add_argument(
        "--retention-hours",
        type=int,
        default=1,
        help="vacuum and log retention the maintenance conf asks for (0 lets VACUUM delete "
        "files a concurrent writer has not committed yet: Delta warns it can corrupt a table)",
    )
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        help="a table maintenance runs on, e.g. bronze.shop_orders (repeatable; default: every "
        "table, as the schedule)",
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--conf", default=str(REPO / "conf"))
    parser.add_argument("--profile", default="local")
    parser.add_argument("--keep", action="store_true", help="keep the scratch lake and logs")
    parser.add_argument("--role", choices=("chain", "analyst"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is not None:
        settings = load_settings(args.conf, args.profile, environ={})
        (chain_worker if args.role == "chain" else analyst_worker)(settings)
        return 0
    if args.minutes <= 0 or args.every <= 0 or args.sample <= 0 or args.rate <= 0:
        parser.error("--minutes, --every, --sample and --rate must be positive")
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C: the broker and workers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    progress = Progress()
    started = datetime.now(UTC)
    results = benchmark(args, progress)
    written = write(results, Path(args.out), started)
    progress.step(f"results: {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
