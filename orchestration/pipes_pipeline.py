"""The continuous pipeline as a Dagster Pipes external process.

    python -m orchestration.pipes_pipeline --conf DIR --profile NAME

Runs every layer of every source (`run_streams`, continuous triggers) until SIGTERM or SIGINT,
then stops the streams cleanly. Launched by Dagster's `headwater_continuous` job, it reports
every few seconds to the run's log how each stream goes (rows, rates, lag) and sends the same
figures as a Pipes custom message; run by hand, without Pipes, it runs the same and logs
locally. A run waits a little for the stream locks of a predecessor Dagster run that is being
stopped (a restart after a stuck run), and fails with StreamBusy on any other holder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

from streaming.config import Settings, load_settings
from streaming.errors import HeadwaterError
from streaming.jobs.common import add_conf_arguments, configure_logging, stop_on_signals
from streaming.locks import StreamBusy
from streaming.progress import Heartbeat, read_heartbeats

log = logging.getLogger("headwater.continuous")

OWNER_PREFIX = "dagster continuous run"
OUTSIDE_DAGSTER = "headwater continuous pipeline outside Dagster"
REPORT_SECONDS = 10.0
PREDECESSOR_WAIT_SECONDS = 90.0


def owner_of(run_id: str | None) -> str:
    """The lock owner a continuous pipeline writes: names its Dagster run when it has one."""
    return f"{OWNER_PREFIX} {run_id}" if run_id else OUTSIDE_DAGSTER


def describe(beat: Heartbeat, now: float) -> str:
    """One log line of a stream's state: last batch, rows, rates, lag, age."""
    since = beat.seconds_since_batch(now)
    behind = "?" if beat.offsets_behind_latest is None else f"{beat.offsets_behind_latest:,}"
    return (
        f"{beat.query_name}: {beat.status}, batch {beat.batch_id if beat.batch_id is not None else '-'}"
        f" ({beat.num_input_rows or 0:,} rows, {beat.input_rows_per_second or 0.0:,.1f} rows/s in,"
        f" {beat.processed_rows_per_second or 0.0:,.1f} rows/s processed, {behind} offsets behind"
        f" latest, last batch {'-' if since is None else f'{since:,.0f} s'} ago)"
    )


def stream_report(settings: Settings, pid: int, now: float) -> dict[str, dict[str, Any]]:
    """This process's streams as they stand (by query name), from their heartbeats."""
    return {
        name: {
            "status": b.status,
            "batch_id": b.batch_id,
            "rows_in_batch": b.num_input_rows,
            "input_rows_per_second": b.input_rows_per_second,
            "processed_rows_per_second": b.processed_rows_per_second,
            "offsets_behind_latest": b.offsets_behind_latest,
            "seconds_since_batch": b.seconds_since_batch(now),
        }
        for name, b in sorted(read_heartbeats(settings).items())
        if b.pid == pid
    }


def report_loop(
    settings: Settings,
    pipes: PipesContext | None,
    stop: threading.Event,
    interval_s: float = REPORT_SECONDS,
) -> None:
    """Every `interval_s` until `stop`: a log line per stream, and a Pipes custom message."""
    pid = os.getpid()
    logger: logging.Logger = pipes.log if pipes is not None else log
    while not stop.wait(interval_s):
        try:
            now = time.time()
            beats = {n: b for n, b in read_heartbeats(settings).items() if b.pid == pid}
            for beat in sorted(beats.values(), key=lambda b: b.query_name):
                logger.info(describe(beat, now))
            if pipes is not None and beats:
                pipes.report_custom_message(
                    {"kind": "stream_progress", "streams": stream_report(settings, pid, now)}
                )
        except Exception:  # reporting must never stop the streams
            log.exception("could not report the streams' progress")


def run_with_retry_on_predecessor(
    run: Callable[[], dict[str, int]],
    stop: threading.Event,
    wait_s: float = PREDECESSOR_WAIT_SECONDS,
) -> dict[str, int]:
    """`run()`, retried while another Dagster continuous run still holds a stream lock (it is
    being stopped: a restart after a stuck run), for at most `wait_s`. Any other holder, or
    one that stays, raises StreamBusy."""
    give_up = time.monotonic() + wait_s
    while True:
        try:
            return run()
        except StreamBusy as busy:
            if OWNER_PREFIX not in str(busy) or time.monotonic() > give_up or stop.is_set():
                raise
            log.info("waiting for the previous continuous run to let go: %s", busy)
            stop.wait(2.0)


@contextmanager
def pipes_or_none() -> Iterator[PipesContext | None]:
    """Dagster Pipes when Dagster launched this process; None otherwise (run by hand)."""
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():  # type: ignore[no-untyped-call]
        yield None
        return
    with open_dagster_pipes() as pipes:
        yield pipes


def main(argv: Sequence[str] | None = None) -> int:
    """0 after a clean stop; 2 on a HeadwaterError (bad conf, a stream busy or failed)."""
    parser = add_conf_arguments(
        argparse.ArgumentParser(
            description="Run the continuous pipeline (every layer) until SIGTERM or SIGINT."
        )
    )
    parser.add_argument(
        "--report-seconds",
        type=float,
        default=REPORT_SECONDS,
        help="how often to report the streams' progress (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    configure_logging()
    with pipes_or_none() as pipes:
        return run(args.conf, args.profile, pipes, args.report_seconds)


def run(conf: str | None, profile: str | None, pipes: PipesContext | None, report_s: float) -> int:
    from streaming.runner import run_streams  # Spark is loaded only to run
    from streaming.session import build_spark_session

    stop = threading.Event()
    say = pipes.log if pipes is not None else log
    run_id = pipes.run_id if pipes is not None else None
    try:
        settings = load_settings(conf, profile)
        spark = build_spark_session(settings)
        stop_on_signals(stop)
        reporter_stop = threading.Event()
        reporter = threading.Thread(
            target=report_loop,
            args=(settings, pipes, reporter_stop, report_s),
            name="pipes-reporter",
            daemon=True,
        )
        reporter.start()
        say.info(f"continuous pipeline started as {owner_of(run_id)} (pid {os.getpid()})")
        try:
            rows = run_with_retry_on_predecessor(
                lambda: run_streams(
                    spark, settings, available_now=False, stop=stop, owner=owner_of(run_id)
                ),
                stop,
            )
        finally:
            reporter_stop.set()
            reporter.join(timeout=30)
            spark.stop()
    except HeadwaterError as exc:
        say.error(f"headwater: {exc}")
        print(f"headwater: {exc}", file=sys.stderr)
        return 2
    summary = {name: count for name, count in sorted(rows.items())}
    say.info(f"continuous pipeline stopped cleanly; rows read per stream: {summary}")
    if pipes is not None:
        pipes.report_custom_message({"kind": "stopped", "rows_by_query": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
