"""What a benchmark reads back after a run, without Spark: Delta logs, data files, stream
checkpoints and the driver JVM's /proc entries.

A row is visible when the Delta commit that added its file lands (the commit file's mtime);
its freshness is that moment minus its Kafka timestamp. A gold table has no per-row Kafka
timestamp: a silver commit is visible in gold when the gold query's batch whose end offset
covers it has committed (its checkpoint's commits/<batch> file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streaming.delta_log import local_path
from streaming.visibility import Commit as Commit
from streaming.visibility import commits as commits
from streaming.visibility import percentile as percentile
from streaming.visibility import stamped_rows
from streaming.visibility import visible_downstream_ms as visible_downstream_ms

Sample = tuple[int, int]  # (Kafka timestamp, freshness), milliseconds


def row_freshness_ms(location: str, since_ms: int = 0) -> list[Sample]:
    """For every row whose Kafka timestamp is at or after `since_ms`: (Kafka timestamp,
    commit landed - Kafka timestamp), in milliseconds. The table needs `kafka_timestamp`."""
    return [(ts, commit.landed_ms - ts) for commit, ts, _ in stamped_rows(location, since_ms)]


def downstream_freshness_ms(
    upstream: str, checkpoints: Sequence[str], since_ms: int = 0
) -> list[Sample]:
    """Freshness of the upstream table's rows (Kafka timestamp at or after `since_ms`) in the
    tables the streams at `checkpoints` keep: visible once the batch covering the row's commit
    has committed in every one of them. Rows some stream has not covered yet are left out."""
    visible = [visible_downstream_ms(checkpoint, upstream) for checkpoint in checkpoints]
    covered = set.intersection(*(set(v) for v in visible)) if visible else set()
    at = {version: max(v[version] for v in visible) for version in covered}
    return [
        (ts, at[commit.version] - ts)
        for commit, ts, _ in stamped_rows(upstream, since_ms)
        if commit.version in at
    ]


def kafka_batches_committed(checkpoint: str) -> list[tuple[dict[int, int], int]]:
    """The committed batches of a query reading one Kafka topic: (end offset per partition,
    exclusive; when its commits/<batch> file landed), oldest first."""
    root = local_path(checkpoint)
    done = []
    for commit_file in sorted((root / "commits").glob("[0-9]*"), key=lambda p: int(p.name)):
        offsets = root / "offsets" / commit_file.name
        if not offsets.is_file():
            continue
        ends: dict[int, int] = {}
        for line in offsets.read_text().splitlines()[2:]:
            for partitions in (json.loads(line) if line.strip().startswith("{") else {}).values():
                ends.update({int(p): int(o) for p, o in partitions.items()})
        done.append((ends, commit_file.stat().st_mtime_ns // 1_000_000))
    return done


def kafka_batch_freshness_ms(
    checkpoint: str,
    table: str,
    since_ms: int = 0,
    record: tuple[str, str] = ("partition", "offset"),
) -> list[Sample]:
    """Freshness of the rows of `table` (with `kafka_timestamp` and the Kafka partition and
    offset in the `record` columns; Kafka timestamp at or after `since_ms`) as of the commit of the batch of the query
    checkpointed at `checkpoint` that read them from Kafka: for a query that writes several
    tables in one batch, when its last write was done. Rows of no committed batch are left
    out."""
    batches = kafka_batches_committed(checkpoint)
    found: list[Sample] = []
    for _, ts, (partition, offset) in stamped_rows(table, since_ms, *record):
        at = next((ms for ends, ms in batches if ends.get(partition, -1) > offset), None)
        if at is not None:
            found.append((ts, at - ts))
    return found


def lag_grew(samples: Sequence[Sample]) -> bool:
    """Whether freshness got worse over the phase: the rows sent in its last quarter were
    visible, at the median, more than twice as late (plus 2 s) as those of its first quarter.
    Bounded lag keeps the two alike; an input rate past what the side sustains does not."""
    if len(samples) < 8:
        return False
    ordered = sorted(samples)
    quarter = len(ordered) // 4
    first = [fresh for _, fresh in ordered[:quarter]]
    last = [fresh for _, fresh in ordered[-quarter:]]
    return percentile(last, 50) > 2 * percentile(first, 50) + 2000


@dataclass(frozen=True)
class ProcessUsage:
    cpu_s: float  # user + system CPU seconds so far
    peak_rss_mib: float  # high-water mark of resident memory


def process_usage(pid: int) -> ProcessUsage:
    """CPU seconds and peak memory of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return ProcessUsage(cpu, peak)
