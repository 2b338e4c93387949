"""The limit: Kafka's own consumer performance tool (kafka-consumer-perf-test, from the Kafka
jars `make setup` resolves) reading the benchmark topic. The most a single consumer gets out of
this broker on this machine; no Spark job can read faster."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

from streaming.config import Settings
from streaming.errors import HeadwaterError
from streaming.versions import require_java

TOOL = "org.apache.kafka.tools.ConsumerPerformance"


def consumer_limit(settings: Settings, topic: str, records: int) -> dict[str, Any]:
    """Read `records` records of `topic` from the start with one consumer; its figures."""
    local = settings.profile.local_kafka
    if local is None:
        raise HeadwaterError("the benchmark's limit needs the profile's local_kafka jars")
    jars = Path(settings.resolve(local.jars_dir))
    command = [
        require_java(),
        "-Xmx512m",
        "-cp",
        f"{jars}/*",
        TOOL,
        "--bootstrap-server",
        settings.profile.kafka.bootstrap_servers,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--group",
        f"headwater-bench-{uuid.uuid4().hex[:8]}",
        "--timeout",
        "60000",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise HeadwaterError(f"{TOOL} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return parse_report(done.stdout)


def parse_report(stdout: str) -> dict[str, Any]:
    """The tool's CSV summary (header line, then one line) as numbers by name."""
    lines = [line for line in stdout.splitlines() if "," in line]
    header = next(i for i, line in enumerate(lines) if "nMsg.sec" in line)
    names = [n.strip() for n in lines[header].split(",")]
    values = [v.strip() for v in lines[header + 1].split(",")]
    row = dict(zip(names, values, strict=True))
    # fetch.nMsg.sec leaves out the consumer group's join, as the sides' rates leave out
    # their streams' start; nMsg.sec (with it) is kept beside it.
    return {
        "throughput_rps": float(row["fetch.nMsg.sec"]),
        "fetch_mb_per_s": float(row["fetch.MB.sec"]),
        "records": int(float(row["data.consumed.in.nMsg"])),
        "with_group_join_rps": float(row["nMsg.sec"]),
    }
