"""One writer per stream: an exclusive lock per stream checkpoint, held while it runs.

Whoever runs a stream (the CLI, spark-submit, the demo, Dagster's micro-batch job or its
continuous pipeline) takes the stream's lock first, so two of them never write one checkpoint
at once. Locks are `flock`s on files under the state directory: the kernel drops them when
the holder dies (even by SIGKILL), so a crash never leaves a stale lock. They guard one
machine; on a cluster, run one orchestrator per pipeline (see docs/orchestration.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from streaming.config import Settings
from streaming.errors import HeadwaterError

# The owner of the locks table maintenance takes (streaming/maintenance.py): a stream waits for
# them rather than failing, and the supervisor does not take them for a pipeline.
MAINTENANCE_OWNER = "headwater maintenance"
MAINTENANCE_POLL_S = 0.5


class StreamBusy(HeadwaterError):
    """A stream is already being written by someone else."""


@dataclass(frozen=True)
class Holder:
    stream: str
    pid: int
    owner: str
    since: float

    @property
    def is_maintenance(self) -> bool:
        """Whether table maintenance holds the lock (for one table's compaction, seconds)."""
        return self.owner.startswith(MAINTENANCE_OWNER)

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.owner} (pid {self.pid}, since {started})"


def lock_dir(settings: Settings) -> Path:
    return settings.state_dir / "locks"


def _file(settings: Settings, stream: str) -> Path:
    return lock_dir(settings) / (re.sub(r"[^A-Za-z0-9._-]", "_", stream) + ".lock")


def holder(settings: Settings, stream: str) -> Holder | None:
    """Who holds the lock of `stream` now; None when nobody runs it."""
    path = _file(settings, stream)
    if not path.exists():
        return None
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return _read(stream, handle.read())
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _read(stream: str, text: str) -> Holder:
    try:
        data = json.loads(text)
        return Holder(stream, int(data["pid"]), str(data["owner"]), float(data["since"]))
    except (ValueError, KeyError, TypeError):
        return Holder(stream, 0, "an unknown process", 0.0)


@contextmanager
def stream_locks(
    settings: Settings, streams: Iterable[str], owner: str, *, wait_for_maintenance_s: float = 0.0
) -> Iterator[None]:
    """Hold the locks of `streams` for the duration of the block.

    Takes all or none: raises StreamBusy naming the holder of the first busy stream. A lock
    that table maintenance holds is waited for, up to `wait_for_maintenance_s`.
    """
    held: list[IO[str]] = []
    lock_dir(settings).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_for_maintenance_s
    try:
        for stream in dict.fromkeys(streams):
            handle: IO[str] = _file(settings, stream).open("a+")
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    handle.seek(0)
                    busy = _read(stream, handle.read())
                    if busy.is_maintenance and time.monotonic() < deadline:
                        time.sleep(MAINTENANCE_POLL_S)
                        continue
                    handle.close()
                    raise StreamBusy(
                        f"stream {stream} is already running in {busy.describe()}: one "
                        "checkpoint has one writer, so stop that run first (or wait for it to "
                        "finish)"
                    ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "owner": f"{owner} on {socket.gethostname()}",
                        "since": time.time(),
                    }
                )
            )
            handle.flush()
            held.append(handle)
        yield
    finally:
        for handle in held:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
