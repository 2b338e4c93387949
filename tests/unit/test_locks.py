"""Stream locks: one writer per stream; a run waits for table maintenance to let go of one."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streaming.locks import MAINTENANCE_OWNER, StreamBusy, holder, stream_locks

pytestmark = pytest.mark.unit
STREAM = "silver:shop.orders"


def held_for_a_moment(
    settings: Any, owner: str, taken: threading.Event, release: threading.Event
) -> None:
    with stream_locks(settings, [STREAM], owner):
        taken.set()
        release.wait(30)


def test_a_run_waits_for_maintenance_and_never_for_another_writer(tmp_path: Path) -> None:
    settings: Any = SimpleNamespace(state_dir=tmp_path)
    for owner, waits in ((f"{MAINTENANCE_OWNER} (dagster run 1)", True), ("headwater run", False)):
        taken, release = threading.Event(), threading.Event()
        other = threading.Thread(target=held_for_a_moment, args=(settings, owner, taken, release))
        other.start()
        assert taken.wait(30)
        busy = holder(settings, STREAM)
        assert busy is not None and busy.is_maintenance == waits
        if waits:
            # The maintenance lets go while the run waits: the run then holds the stream.
            threading.Timer(0.5, release.set).start()
            with stream_locks(settings, [STREAM], "headwater run", wait_for_maintenance_s=30):
                now = holder(settings, STREAM)
                assert now is not None and now.owner.startswith("headwater run")
        else:
            with (
                pytest.raises(StreamBusy, match="already running in headwater run"),
                stream_locks(settings, [STREAM], "other", wait_for_maintenance_s=30),
            ):
                pass
            release.set()
        other.join(30)
