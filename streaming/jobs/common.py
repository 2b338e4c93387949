"""What every spark-submit job and CLI stream command shares: arguments, logging, signals."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from streaming.config import load_settings
from streaming.errors import HeadwaterError

log = logging.getLogger("headwater")


def add_conf_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--conf and --profile, as every headwater command and job takes them."""
    parser.add_argument(
        "--conf", default=None, help="conf directory (default: $HEADWATER_CONF or ./conf)"
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="profile in conf/profiles (default: $HEADWATER_PROFILE or local)",
    )
    return parser


def job_arguments(description: str) -> argparse.ArgumentParser:
    return add_conf_arguments(argparse.ArgumentParser(description=description))


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM set `stop`, so streams end their batch and stop cleanly.

    Call it after the SparkSession exists: creating a SparkContext installs PySpark's own
    SIGINT handler (cancel all jobs, raise KeyboardInterrupt), which this replaces.
    Does nothing outside the main thread, where Python allows no signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping the streams", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def stream_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments of every stream job: conf, profile, topics, availableNow."""
    parser = job_arguments(description)
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        help="a source topic or table name from conf/pipeline.yaml (repeatable; default: all)",
    )
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="catch up with what is there now, then stop (default: run continuously)",
    )
    return parser


def run_job(
    args: argparse.Namespace, *, layers: Sequence[str], topics: Sequence[str], available_now: bool
) -> int:
    """Build the session from conf and run the streams of `layers`; 0 on success, 2 on a
    HeadwaterError (printed as one sentence)."""
    # Imported here so `--help` answers without loading Spark.
    from streaming.runner import run_streams
    from streaming.session import build_spark_session

    configure_logging()
    stop = threading.Event()
    try:
        settings = load_settings(args.conf, args.profile)
        spark = build_spark_session(settings)
        stop_on_signals(stop)
        try:
            rows = run_streams(
                spark, settings, topics, available_now=available_now, stop=stop, layers=layers
            )
        finally:
            spark.stop()
    except HeadwaterError as exc:
        print(f"headwater: {exc}", file=sys.stderr)
        return 2
    for name, count in sorted(rows.items()):
        log.info("%s: %d rows ingested", name, count)
    return 0
