"""How many rows a local Delta table holds, read from its transaction log alone (no Spark).

Every file a Delta write adds carries `numRecords` in its statistics; replaying the log (the
files of its latest checkpoint, then the JSON commits after it: adds minus removes, less the
rows a deletion vector hides) gives the live row count in milliseconds. Watchers that poll a
table while a stream writes it (tests, progress displays, benchmarks) use this instead of a
Spark count, which costs a job each time on a busy driver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

COMMIT = re.compile(r"^\d{20}\.json$")
LAST_CHECKPOINT = "_last_checkpoint"
_V = TypeVar("_V")


class DeltaLogError(RuntimeError):
    """The log cannot be counted without Spark (no statistics, or history cut at a checkpoint)."""


def local_path(location: str) -> Path:
    """A table location as a local path ('file:' URIs and plain paths only)."""
    if location.startswith("file://"):
        return Path(location[len("file://") :])
    if location.startswith("file:"):
        return Path(location[len("file:") :])
    if "://" in location:
        raise DeltaLogError(f"{location} is not on local disk: count it with Spark")
    return Path(location)


def _commits(location: str) -> list[Path]:
    """The table's JSON commit files, oldest first (none if no table is there)."""
    log = local_path(location) / "_delta_log"
    return sorted(p for p in log.glob("*.json") if COMMIT.match(p.name))


def latest_version(location: str) -> int | None:
    """The table's latest commit version; None if no table is there."""
    commits = _commits(location)
    return int(commits[-1].name[:20]) if commits else None


def live_rows(location: str) -> int | None:
    """Rows in the Delta table at `location` as of its latest commit; None if no table is there.
    Raises DeltaLogError as `live_files` does, and for a file written without statistics."""
    rows = _live(location, lambda add: _rows(add, location))
    return None if rows is None else sum(rows.values())


def live_files(location: str) -> int | None:
    """Data files of the Delta table at `location` as of its latest commit; None if no table
    is there. Raises DeltaLogError when older commits were cleaned up and no checkpoint this
    reader understands (a classic one) covers them."""
    paths = _live(location, lambda add: str(add["path"]))
    return None if paths is None else len(set(paths.values()))


def _live(location: str, value: Callable[[dict[str, Any]], _V]) -> dict[str, _V] | None:
    """`value` of each live file's add action, by file (and deletion vector), replaying the log
    from its latest checkpoint (or from version 0 when it has none); None if no table is
    there."""
    commits = _commits(location)
    if not commits:
        return None
    first = int(commits[0].name[:20])
    files: dict[str, _V] = {}
    checkpoint = _checkpoint(location)
    if checkpoint is not None and checkpoint[0] >= first - 1:
        version, parts = checkpoint
        for part in parts:
            for add in _checkpoint_adds(part):
                files[_file_key(add)] = value(add)
        commits = [c for c in commits if int(c.name[:20]) > version]
    elif first != 0:
        raise DeltaLogError(
            f"the log of {location} starts at version {first} and has no checkpoint to start "
            "from: count it with Spark"
        )
    for commit in commits:
        for line in commit.read_text().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action:
                add = action["add"]
                files[_file_key(add)] = value(add)
            elif "remove" in action:
                files.pop(_file_key(action["remove"]), None)
    return files


def _checkpoint(location: str) -> tuple[int, list[Path]] | None:
    """(version, parquet files) of the checkpoint `_last_checkpoint` names, when it is a
    classic one (one file or several parts) that is all there; else None. Delta writes that
    pointer once the checkpoint is complete, so a checkpoint being written is never read."""
    log = local_path(location) / "_delta_log"
    try:
        pointer = json.loads((log / LAST_CHECKPOINT).read_text())
        version = int(pointer["version"])
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or being rewritten
        return None
    if "v2Checkpoint" in pointer:
        return None  # a V2 checkpoint (manifest and sidecars): replay the commits instead
    count = int(pointer.get("parts") or 1)
    if "parts" in pointer:
        parts = [
            log / f"{version:020d}.checkpoint.{n:010d}.{count:010d}.parquet"
            for n in range(1, count + 1)
        ]
    else:
        parts = [log / f"{version:020d}.checkpoint.parquet"]
    return (version, parts) if all(p.is_file() for p in parts) else None


def _checkpoint_adds(part: Path) -> list[dict[str, Any]]:
    """The add actions of a checkpoint file: the table's live files at its version."""
    import pyarrow.parquet as pq

    column = pq.read_table(part, columns=["add"]).column("add")
    return [add for add in column.to_pylist() if add is not None]


def _file_key(action: dict[str, object]) -> str:
    """A data file with its deletion vector, if any: re-adding a file with a new vector
    removes the old pair first."""
    vector = action.get("deletionVector")
    if isinstance(vector, dict):  # a checkpoint has a null where a commit leaves a field out
        vector = {key: value for key, value in vector.items() if value is not None}
    return f"{action['path']}#{json.dumps(vector, sort_keys=True) if vector else ''}"


def _rows(add: dict[str, object], location: str) -> int:
    stats = add.get("stats")
    if not isinstance(stats, str):
        raise DeltaLogError(f"{location} has a file without statistics: count it with Spark")
    records = int(json.loads(stats)["numRecords"])
    vector = add.get("deletionVector")
    hidden = int(vector.get("cardinality", 0)) if isinstance(vector, dict) else 0
    return records - hidden


@dataclass(frozen=True)
class Written:
    """What a table's commits after some version wrote, read from its log alone."""

    version: int  # the newest version read
    commits: int  # commits that changed data (maintenance and property changes left out)
    rows_added: int  # net: rows of the files added less those of the files removed
    rows_total: int | None  # live rows at `version` (None: the log cannot say, see live_rows)
    landed_ms: int  # when the newest data commit landed (its file's mtime)
    rows_by_day: dict[str, int]  # net rows per day of the table's day column (ISO dates)
    newest: dict[str, str]  # per asked column, its largest value in the added files


def written_since(
    location: str,
    after: int,
    *,
    day_column: str | None = None,
    columns: Sequence[str] = (),
) -> Written | None:
    """The data commits of the local Delta table at `location` after version `after` (-1: all
    of them); None when there are none. Rows per day come from the files' partition values
    when the table is partitioned by `day_column`, else from the column's statistics (a
    file's rows go to the newest day it holds). `newest` reads the statistics of `columns`."""
    commits = [c for c in _commits(location) if int(c.name[:20]) > after]
    if not commits:
        return None
    changed, net, landed = 0, 0, 0
    by_day: dict[str, int] = {}
    newest: dict[str, str] = {}
    for commit in commits:
        data = False
        for line in commit.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            kind = "add" if "add" in action else "remove" if "remove" in action else None
            if kind is None or not action[kind].get("dataChange", True):
                continue
            file = action[kind]
            stats = json.loads(file.get("stats") or "{}")
            rows = int(stats.get("numRecords", 0)) * (1 if kind == "add" else -1)
            net += rows
            data = True
            day = _day_of(file, stats, day_column)
            if day is not None:
                by_day[day] = by_day.get(day, 0) + rows
            if kind == "add":
                for column in columns:
                    value = (stats.get("maxValues") or {}).get(column)
                    if isinstance(value, str) and value > newest.get(column, ""):
                        newest[column] = value
        if data:
            changed += 1
            landed = commit.stat().st_mtime_ns // 1_000_000
    if not changed:
        return None
    try:
        total = live_rows(location)
    except DeltaLogError:
        total = None
    if after < 0 and total is not None:
        net = total  # the whole table: its early commits may have been cleaned up
    return Written(int(commits[-1].name[:20]), changed, net, total, landed, by_day, newest)


def _day_of(file: dict[str, Any], stats: dict[str, Any], column: str | None) -> str | None:
    """The day (ISO date) a file's rows belong to by `column`: its partition value, else the
    newest value its statistics hold."""
    if column is None:
        return None
    value = (file.get("partitionValues") or {}).get(column)
    if value is None:
        value = (stats.get("maxValues") or {}).get(column)
    return str(value)[:10] if value else None
