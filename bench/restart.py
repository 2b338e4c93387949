"""How soon gold commits again after the pipeline is killed: `headwater run` (every stream of
the demo configuration, the default topology) runs while order events arrive; once gold has
committed it is SIGKILLed and started again, and the figure is the seconds from the restart's
launch to the first gold commit after it (the driver's start, the queries' start and the
first batch's writes included).

    python -m bench.restart --conf DIR --rate R --out FILE
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.side import orders, orders_source, wait_for
from devstack.generator.producer import produce
from streaming.config import Settings, load_settings
from streaming.gold.definitions import load_gold_tables
from streaming.visibility import commits

REPO = Path(__file__).resolve().parent.parent


def gold_commits_after(settings: Settings, since_ms: int) -> int | None:
    """When the first gold commit that landed at or after `since_ms` landed; None: none yet."""
    landed = [
        c.landed_ms
        for table in load_gold_tables(settings)
        for c in _commits(settings.table_path("gold", table.name))
        if c.landed_ms >= since_ms and c.rows_added
    ]
    return min(landed) if landed else None


def _commits(path: str) -> list[Any]:
    return commits(path) if Path(path, "_delta_log").is_dir() else []


def start_pipeline(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "devstack.cli", "--conf", str(settings.conf_dir), "run"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def measure(settings: Settings, rate: float, log: Path) -> dict[str, Any]:
    """Seconds from a restart after SIGKILL to the first gold commit, and the same for the
    first start (a fresh lake)."""
    stop = threading.Event()
    topic = orders_source(settings).topic
    feed = threading.Thread(
        target=lambda: produce(
            settings.profile.kafka, orders(topic, seed=13), rate=rate, stop=stop
        ),
        daemon=True,
    )
    feed.start()
    try:
        first_ms = int(time.time() * 1000)
        process = start_pipeline(settings, log)
        try:
            wait_for(lambda: gold_commits_after(settings, first_ms) is not None, 600, "gold")
            first_gold = gold_commits_after(settings, first_ms) or first_ms
            first = (first_gold - first_ms) / 1000
            # A few gold commits more, so the kill lands in the middle of the streams' work.
            wait_for(
                lambda: (
                    sum(
                        len(
                            [
                                c
                                for c in _commits(settings.table_path("gold", t.name))
                                if c.landed_ms > first_gold
                            ]
                        )
                        for t in load_gold_tables(settings)
                    )
                    >= 3
                ),
                300,
                "three more gold commits",
            )
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        restart_ms = int(time.time() * 1000)
        process = start_pipeline(settings, log)
        try:
            wait_for(lambda: gold_commits_after(settings, restart_ms) is not None, 600, "gold")
            restart = ((gold_commits_after(settings, restart_ms) or 0) - restart_ms) / 1000
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
    finally:
        stop.set()
        feed.join(timeout=60)
    return {"start_to_gold_s": round(first, 2), "restart_to_gold_s": round(restart, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", required=True)
    parser.add_argument("--profile", default="local")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    settings = load_settings(args.conf, args.profile, environ={})
    log = Path(args.out).with_suffix(".log")
    result = measure(settings, args.rate, log)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
