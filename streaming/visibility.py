"""When rows became visible, read from disk without Spark: the Delta commits that added them
(each commit file's mtime is when readers can see it) and the checkpoints of the streams
that read them on.

A row is visible in its table when the commit that added its file lands. A table kept by a
stream reading another (silver from bronze, gold from silver) has seen an upstream commit
when the batch whose end offset covers it has committed (its checkpoint's commits/<batch>).
Local tables only (plain paths and file: URIs); the benchmark, the demo and the freshness
report use it.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streaming.delta_log import _commits, local_path


@dataclass(frozen=True)
class Commit:
    version: int
    landed_ms: int  # mtime of the commit file: when readers can see it
    rows_added: int  # rows of files added with dataChange (appends, MERGE inserts)
    files_added: tuple[str, ...]


def commits(location: str) -> list[Commit]:
    """The table's commits, oldest first."""
    found = []
    for path in _commits(location):
        version = int(path.name[:20])
        rows, files = 0, []
        for line in path.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            add = action.get("add")
            if add and add.get("dataChange", True):
                files.append(add["path"])
                rows += json.loads(add.get("stats") or "{}").get("numRecords", 0)
        landed = path.stat().st_mtime_ns // 1_000_000
        found.append(Commit(version, landed, rows, tuple(files)))
    return found


def stamped_rows(
    location: str, since_ms: int = 0, *columns: str
) -> Iterator[tuple[Commit, int, tuple[Any, ...]]]:
    """Every row the table's commits added whose Kafka timestamp is at or after `since_ms`: (its commit, its Kafka timestamp in milliseconds, the values of
    `columns`). The table needs `kafka_timestamp`."""
    import pyarrow.parquet as pq

    root = local_path(location)
    for commit in commits(location):
        if commit.landed_ms < since_ms:
            continue  # its rows were in Kafka before since_ms
        for file in commit.files_added:
            rows = pq.read_table(root / file, columns=["kafka_timestamp", *columns])
            stamps = rows.column("kafka_timestamp").cast("timestamp[ms]").cast("int64")
            others = [rows.column(c).to_pylist() for c in columns]
            for ts, *values in zip(stamps.to_pylist(), *others, strict=True):
                if ts is not None and ts >= since_ms:
                    yield commit, ts, tuple(values)


def version_landed_ms(location: str) -> dict[int, int]:
    return {c.version: c.landed_ms for c in commits(location)}


def table_id(location: str) -> str:
    """The Delta table's id (metaData.id), as a Delta source's offsets name it."""
    for path in _commits(location):
        for line in path.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "metaData" in action:
                return str(action["metaData"]["id"])
    raise ValueError(f"{location} has no metaData action")


def visible_downstream_ms(checkpoint: str, source_location: str) -> dict[int, int]:
    """Source table version -> when the stream checkpointed at `checkpoint` had committed a
    batch that read it (the mtime of commits/<batch>), for every version it read."""
    source = table_id(source_location)
    done: list[tuple[int, int]] = []  # (batch end version, exclusive), committed at
    root = local_path(checkpoint)
    for commit_file in sorted((root / "commits").glob("[0-9]*"), key=lambda p: int(p.name)):
        offsets = root / "offsets" / commit_file.name
        if not offsets.is_file():
            continue
        for line in offsets.read_text().splitlines()[2:]:
            offset = json.loads(line) if line.strip().startswith("{") else {}
            if offset.get("reservoirId") == source:
                end = int(offset["reservoirVersion"]) + (1 if offset.get("index", -1) >= 0 else 0)
                done.append((end, commit_file.stat().st_mtime_ns // 1_000_000))
    visible: dict[int, int] = {}
    for version in version_landed_ms(source_location):
        at = next((ms for end, ms in done if end > version), None)
        if at is not None:
            visible[version] = at
    return visible


def visible_in_gold_ms(checkpoint: str, source_location: str) -> dict[int, int]:
    """Source table version -> when the gold stream checkpointed at `checkpoint` had it (in
    both topologies a gold table has its own query); nothing while it has no commits."""
    if not (local_path(checkpoint) / "commits").is_dir():
        return {}
    return visible_downstream_ms(checkpoint, source_location)


@dataclass(frozen=True)
class ChangeFreshness:
    """How long records took to become visible: milliseconds from when they were made (a
    source database's commit for CDC changes, the Kafka timestamp for events) to the table
    they land in first (silver's current state, or the events' silver table) and to each gold
    table they feed, one sample per record that has got there."""

    to_current_ms: list[int]
    to_gold_ms: dict[str, list[int]]
    what: tuple[str, str] = ("change", "from their commit in the source database")

    def describe(self, current_table: str) -> str | None:
        """One line of medians and 99th percentiles; None when no record has been measured."""
        if not self.to_current_ms:
            return None
        parts = [f"-> {current_table} {_spread(self.to_current_ms)}"]
        parts += [f"-> gold.{name} {_spread(ms)}" for name, ms in self.to_gold_ms.items() if ms]
        count = len(self.to_current_ms)
        noun, since = self.what
        records = f"{count:,} {noun}{'s' if count != 1 else ''}"
        return f"{records}, {since}: " + "; ".join(parts)


def event_freshness(
    silver: str, golds: dict[str, tuple[str, str]], *, since_ms: int = 0
) -> ChangeFreshness:
    """Freshness of the events in the silver table at `silver` with a Kafka timestamp at or
    after `since_ms`: Kafka timestamp -> the silver commit that holds them, and -> each gold
    table (by name: its location and its layered stream's checkpoint, `golds[name]`)."""
    gold_seen = {
        name: visible_in_gold_ms(checkpoint, silver) for name, (_, checkpoint) in golds.items()
    }
    to_silver: list[int] = []
    to_gold: dict[str, list[int]] = {name: [] for name in golds}
    for commit, ts, _ in stamped_rows(silver, since_ms):
        to_silver.append(commit.landed_ms - ts)
        for name, seen in gold_seen.items():
            if commit.version in seen:
                to_gold[name].append(seen[commit.version] - ts)
    return ChangeFreshness(to_silver, to_gold, ("event", "from Kafka"))


def _spread(samples: list[int]) -> str:
    return f"p50 {percentile(samples, 50) / 1000:.1f} s, p99 {percentile(samples, 99) / 1000:.1f} s"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


def change_freshness(
    changes: str,
    current: str,
    golds: dict[str, tuple[str, str]],
    *,
    since_ms: int = 0,
) -> ChangeFreshness:
    """Freshness of the changes a CDC silver stream appended to the table at `changes`,
    committed at or after `since_ms`: to the current-state table at `current` (the first of
    its commits to land after the change's: the same batch MERGEs it), and to each gold table
    (by name: its location and its layered stream's checkpoint, `golds[name]`). Snapshot reads (op r) carry the
    snapshot's time, not a commit's, and are left out; so are changes not visible yet."""
    current_landed = sorted(c.landed_ms for c in commits(current))
    gold_seen = {
        name: visible_in_gold_ms(checkpoint, changes) for name, (_, checkpoint) in golds.items()
    }
    to_current: list[int] = []
    to_gold: dict[str, list[int]] = {name: [] for name in golds}
    for commit, _, (changed_at, op) in stamped_rows(changes, 0, "changed_at", "op"):
        if op == "r" or not isinstance(changed_at, datetime):
            continue
        if changed_at.tzinfo is None:  # Spark's timestamps are UTC instants
            changed_at = changed_at.replace(tzinfo=UTC)
        committed_ms = int(changed_at.timestamp() * 1000)
        if committed_ms < since_ms:
            continue
        at = bisect.bisect_left(current_landed, commit.landed_ms)
        if at < len(current_landed):
            to_current.append(current_landed[at] - committed_ms)
        for name, seen in gold_seen.items():
            if commit.version in seen:
                to_gold[name].append(seen[commit.version] - committed_ms)
    return ChangeFreshness(to_current, to_gold)
