"""How long a Spark driver takes to start, with and without the class-data-sharing archive
`make setup` records (`headwater jvm-archive`).

Each round starts a fresh driver in a child process (the way the demo, `headwater stream`, a
Dagster run or spark-submit does) and times the session's start and a first Delta write and
read; the rounds alternate with and without the archive, and the median of each is printed.

    .venv/bin/python bench/driver_start.py [--rounds 3] [--conf conf] [--profile local]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
started = time.monotonic()
from streaming.config import load_settings
from streaming.session import build_spark_session
settings = load_settings(sys.argv[1], sys.argv[2])
spark_settings = settings.profile.spark.model_copy(update={"class_data_sharing": sys.argv[3] == "on"})
settings = settings.model_copy(
    update={"profile": settings.profile.model_copy(update={"spark": spark_settings})}
)
spark = build_spark_session(settings, ui=False)
session = time.monotonic()
spark.range(100).write.format("delta").save(sys.argv[4])
spark.read.format("delta").load(sys.argv[4]).count()
delta = time.monotonic()
print(json.dumps({"session_s": session - started, "first_delta_s": delta - session}))
"""


def one_start(conf: str, profile: str, archive: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="headwater-bench-") as scratch:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                conf,
                profile,
                "on" if archive else "off",
                scratch + "/t",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conf", default="conf")
    parser.add_argument("--profile", default="local")
    args = parser.parse_args()

    from streaming.config import load_settings
    from streaming.jvm_archive import archive_path

    archive = archive_path(load_settings(Path(args.conf), args.profile))
    if not archive.is_file():
        print(f"no archive at {archive}: run `make jvm-archive` first", file=sys.stderr)
        return 2
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for with_archive in (False, True):
            began = time.monotonic()
            runs[with_archive].append(one_start(args.conf, args.profile, with_archive))
            runs[with_archive][-1]["process_s"] = time.monotonic() - began
    for with_archive, label in ((False, "without archive"), (True, "with archive")):
        medians = {
            key: statistics.median(r[key] for r in runs[with_archive])
            for key in ("session_s", "first_delta_s", "process_s")
        }
        print(
            f"{label:16}: session {medians['session_s']:.1f} s, first Delta write+read "
            f"{medians['first_delta_s']:.1f} s, whole process {medians['process_s']:.1f} s "
            f"(median of {args.rounds})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
