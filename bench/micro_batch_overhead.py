"""How long an orchestrated micro-batch run takes, from start to exit, at the demo's rate, and
what Dagster adds over running the same availableNow catch-up with spark-submit directly.

Each round, the generator first sends one minute of the demo's traffic (`--rate` x 60
records; the micro-batch schedule runs every minute), then one side catches every table up:

- dagster: `dagster job execute` of `headwater_micro_batch` for today's partition (a
  temporary DAGSTER_HOME): bronze, silver and gold with availableNow streams, and the data
  quality checks between the layers, in one process;
- spark-submit: `spark-submit streaming/jobs/pipeline.py --available-now`, the same streams
  without Dagster (and without its checks).

The sides alternate; the medians and their difference are printed. It needs the local
services (`headwater up`) and nothing else running the streams (`headwater demo` stopped).

    .venv/bin/headwater up
    .venv/bin/python bench/micro_batch_overhead.py [--rate 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def generate(count: int, seed: int) -> None:
    subprocess.run(
        [str(BIN / "headwater"), "generate", "--count", str(count), "--seed", str(seed)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise SystemExit(f"{command[0]} failed (exit {done.returncode}):\n{tail}")
    return seconds


def dagster_run(home: Path) -> float:
    from orchestration.defs.micro_batch.jobs import JOB
    from orchestration.defs.partitions import today

    return timed(
        [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "orchestration.definitions",
            "-j",
            JOB,
            "--tags",
            json.dumps({"dagster/partition": today()}),
        ],
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )


def spark_submit_run(conf: str, profile: str) -> float:
    from streaming.config import load_settings
    from streaming.deploy import submit_command

    settings = load_settings(Path(conf), profile)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}  # as `headwater run` does
    return timed(submit_command(settings, "pipeline", available_now=True), env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="the demo's records/s")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conf", default="conf")
    parser.add_argument("--profile", default="local")
    args = parser.parse_args()

    per_run = int(args.rate * 60)
    seconds: dict[str, list[float]] = {"dagster": [], "spark-submit": []}
    with tempfile.TemporaryDirectory(prefix="headwater-bench-dagster-") as home:
        # A first catch-up of whatever the topics already hold, not counted.
        print("catching up what the topics hold (not counted)", flush=True)
        spark_submit_run(args.conf, args.profile)
        seed = 1000
        for round_ in range(args.rounds):
            for side in ("dagster", "spark-submit"):
                seed += 1
                generate(per_run, seed)
                took = (
                    dagster_run(Path(home))
                    if side == "dagster"
                    else spark_submit_run(args.conf, args.profile)
                )
                seconds[side].append(took)
                print(f"round {round_ + 1} {side}: {per_run} new records, {took:.1f} s", flush=True)
    dagster, submit = (statistics.median(seconds[s]) for s in ("dagster", "spark-submit"))
    print(
        f"median over {args.rounds} rounds, {per_run} records each: dagster run {dagster:.1f} s, "
        f"spark-submit {submit:.1f} s, Dagster adds {dagster - submit:.1f} s "
        f"({(dagster / submit - 1) * 100:.0f}%, its quality checks included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
