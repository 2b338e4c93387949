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
from collections.abc import Callable
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
