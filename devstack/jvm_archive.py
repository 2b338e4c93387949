"""Recording the Spark driver's class-data-sharing archive (`headwater jvm-archive`, run by
`make setup`): a driver runs the pipeline's own code over a few demo records on a throw-away
lake with `-XX:ArchiveClassesAtExit`, and the archive it writes at exit is kept where
streaming/jvm_archive.py finds it for every later driver."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from streaming.config import LakeSettings, Settings, Source
from streaming.errors import HeadwaterError
from streaming.jvm_archive import QUIET, archive_path

WORKLOAD_RECORDS = 60

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def build_archive(settings: Settings) -> Path:
    """Record the archive for `settings` (a minute on two cores); returns its path.

    The recording driver runs in a child process: the JVM writes the archive when it exits.
    Raises HeadwaterError when the recording fails.
    """
    path = archive_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    recording = path.with_suffix(f".{os.getpid()}.recording")
    recording.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "devstack.jvm_archive",
        str(settings.conf_dir),
        settings.profile_name,
        str(recording),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not recording.is_file():
        recording.unlink(missing_ok=True)
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise HeadwaterError(
            "could not record the Spark driver's class-data-sharing archive: "
            + (" | ".join(tail) or f"exit code {done.returncode}")
        )
    for old in path.parent.glob("driver-*.jsa"):
        old.unlink()
    recording.replace(path)
    return path


def _record(settings: Settings, recording: Path) -> None:
    """Run a driver that writes its archive to `recording` at exit: the pipeline's own code
    on a temporary lake (a bronze table of demo records, its silver stream to rest, and a
    Kafka source's plan), which loads the classes every layer's queries share."""
    from streaming.runner import run_streams
    from streaming.session import build_spark_session

    events = [s for s in settings.pipeline.sources if s.kind == "events" and s.silver][:1]
    if not events:
        raise HeadwaterError(
            "recording the class-data-sharing archive needs an events source with silver in "
            "conf/pipeline.yaml"
        )
    with tempfile.TemporaryDirectory(prefix="headwater-cds-") as scratch:
        lake = LakeSettings(root=f"{scratch}/lake", checkpoints=f"{scratch}/checkpoints")
        profile = settings.profile.model_copy(update={"lake": lake, "state_dir": scratch})
        local = settings.model_copy(update={"profile": profile})
        spark = build_spark_session(
            local, ui=False, java_options=f"-XX:ArchiveClassesAtExit={recording} {QUIET}"
        )
        try:
            _write_bronze(spark, local, events[0])
            kafka = spark.readStream.format("kafka").option("subscribe", "headwater-cds")
            _ = kafka.option("kafka.bootstrap.servers", "127.0.0.1:1").load().schema
            topics = [events[0].topic]
            run_streams(spark, local, topics, available_now=True, layers=("silver",), owner="cds")
        finally:
            spark.stop()


def _write_bronze(spark: SparkSession, settings: Settings, source: Source) -> None:
    """The bronze table of `source`: the demo shop's records for it, every fault included."""
    from pyspark.sql import functions as F

    from devstack.generator.shop import FaultRates, ShopSimulator
    from streaming.bronze import BRONZE_SCHEMA, PARTITION_COLUMN, to_bronze

    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    shop = ShopSimulator(1, start, faults=FaultRates.parse("all"), orders_topic=source.topic)
    rows = [
        (r.key, r.value, r.topic, 0, offset, start, 0, list(r.headers))
        for offset, r in enumerate(islice(shop, WORKLOAD_RECORDS))
        if r.topic == source.topic
    ]
    kafka = spark.createDataFrame(
        rows,
        "key binary, value binary, topic string, partition int, offset long, timestamp "
        "timestamp, timestampType int, headers array<struct<key: string, value: binary>>",
    )
    bronze = to_bronze(kafka, ingest_time=F.lit(start)).select(BRONZE_SCHEMA.fieldNames())
    bronze.write.format("delta").partitionBy(PARTITION_COLUMN).mode("append").save(
        settings.table_path("bronze", source.table_name)
    )


def main(argv: list[str]) -> int:
    from streaming.config import load_settings

    conf_dir, profile, recording = argv
    _record(load_settings(Path(conf_dir), profile), Path(recording))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
