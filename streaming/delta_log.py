"""How many rows a local Delta table holds, read from its transaction log alone (no Spark).

Every file a Delta write adds carries `numRecords` in its statistics; replaying the JSON
commits (adds minus removes, less the rows a deletion vector hides) gives the live row
count in milliseconds. Watchers that poll a table while a stream writes it (tests, progress
displays) use this instead of a Spark count, which costs a job each time on a busy driver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

COMMIT = re.compile(r"^\d{20}\.json$")
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
    """Rows in the Delta table at `location` as of its latest commit; None if no table is there."""
    rows = _live(location, lambda add: _rows(add, location))
    return None if rows is None else sum(rows.values())


def live_files(location: str) -> int | None:
    """Data files of the Delta table at `location` as of its latest commit; None if no table
    is there. Raises DeltaLogError when older commits were cleaned up after a checkpoint."""
    paths = _live(location, lambda add: str(add["path"]))
    return None if paths is None else len(set(paths.values()))


def _live(location: str, value: Callable[[dict[str, Any]], _V]) -> dict[str, _V] | None:
    """`value` of each live file's add action, by file (and deletion vector), replaying every
    commit; None if no table is there."""
    commits = _commits(location)
    if not commits:
        return None
    if int(commits[0].name[:20]) != 0:
        raise DeltaLogError(
            f"the log of {location} starts at version {int(commits[0].name[:20])} "
            "(older commits were cleaned up after a checkpoint): count it with Spark"
        )
    files: dict[str, _V] = {}
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


def _file_key(action: dict[str, object]) -> str:
    """A data file with its deletion vector, if any: re-adding a file with a new vector
    removes the old pair first."""
    vector = action.get("deletionVector")
    return f"{action['path']}#{json.dumps(vector, sort_keys=True) if vector else ''}"


def _rows(add: dict[str, object], location: str) -> int:
    stats = add.get("stats")
    if not isinstance(stats, str):
        raise DeltaLogError(f"{location} has a file without statistics: count it with Spark")
    records = int(json.loads(stats)["numRecords"])
    vector = add.get("deletionVector")
    hidden = int(vector.get("cardinality", 0)) if isinstance(vector, dict) else 0
    return records - hidden
