"""SIGKILL the bronze stream process mid-run, restart it: nothing missing, nothing doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from streaming.config import Settings
from streaming.generator.producer import Delivered, produce
from streaming.generator.shop import FaultRates, ShopSimulator
from streaming.kafka_client import ensure_topics
from streaming.runner import run_streams
from tests.helpers import START, bronze_count, bronze_records, expected_records, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
KILLS = 3


def start_stream_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`headwater stream bronze` (continuous, 1 s trigger) in its own process group, so a
    SIGKILL to the group takes the Python driver and its Spark JVM down together."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streaming.cli",
                "--conf",
                str(settings.conf_dir),
                "stream",
                "bronze",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    spark: SparkSession, pipeline: Settings, tmp_path: Path
) -> None:
    rng = random.Random(20261124)
    ensure_topics(pipeline.profile.kafka, pipeline.pipeline.sources)
    sent: list[Delivered] = []
    stop = threading.Event()
    simulator = ShopSimulator(
        8,
        START,
        faults=FaultRates.parse("duplicates,malformed"),
        orders_topic=pipeline.pipeline.sources[0].topic,
        payments_topic=pipeline.pipeline.sources[1].topic,
    )
    producer = threading.Thread(
        target=lambda: sent.extend(
            produce(
                pipeline.profile.kafka, simulator, rate=120, stop=stop, keep_deliveries=True
            ).deliveries
        )
    )
    producer.start()
    log = tmp_path / "stream.log"
    try:
        for kill in range(KILLS):
            before = bronze_count(spark, pipeline)
            process = start_stream_process(pipeline, log)
            # Kill at a random point: after a random number of new rows reached bronze.
            target = before + rng.randint(100, 600)
            try:
                wait_until(
                    lambda p=process, t=target: (
                        p.poll() is not None or bronze_count(spark, pipeline) >= t
                    ),
                    180,
                    f"bronze to pass {target} rows (kill {kill + 1})",
                    poll_s=1.0,
                )
                assert process.poll() is None, (
                    f"the stream process died by itself:\n{log.read_text()[-3000:]}"
                )
            finally:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
            assert process.returncode == -signal.SIGKILL
    finally:
        stop.set()
        producer.join(timeout=120)
    assert len(sent) > 300

    # The restart: catch up with everything Kafka holds, then compare record by record.
    run_streams(spark, pipeline, available_now=True)
    found = bronze_records(spark, pipeline)
    expected = expected_records(sent)
    missing = expected - found
    doubled = {k: n for k, n in found.items() if n > 1}
    assert not missing, f"{sum(missing.values())} records missing from bronze"
    assert not doubled, f"{len(doubled)} records doubled in bronze"
    assert found == expected
