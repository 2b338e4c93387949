"""owned_pid trusts a pid file only for a live process with the service's config file on its
command line, and an empty /proc read of a live process is not taken for its death."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.services.kafka_broker import owned_pid

pytestmark = pytest.mark.unit


@pytest.fixture
def live_child(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A live child whose command line names `marker`, and a pid file of it."""
    marker = tmp_path / "server.properties"
    marker.write_text("")
    # It lives until its standard input closes: no timer decides when it ends.
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", str(marker)],
        stdin=subprocess.PIPE,
    )
    pid_file = tmp_path / "node.pid"
    pid_file.write_text(str(child.pid))
    yield child, pid_file, marker
    assert child.stdin is not None
    child.stdin.close()  # it ends by itself now (a test may have killed it already)
    child.wait(timeout=30)


def test_a_live_process_naming_its_config_is_owned(live_child) -> None:  # type: ignore[no-untyped-def]
    child, pid_file, marker = live_child
    assert owned_pid(pid_file, marker) == child.pid
    assert owned_pid(pid_file, marker.with_name("other.properties")) is None
    assert owned_pid(pid_file.with_name("missing.pid"), marker) is None


def test_an_empty_read_of_a_live_process_is_read_again(
    live_child, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    child, pid_file, marker = live_child
    real = Path.read_bytes
    empty_reads = iter([b"", b""])

    def flaky(path: Path) -> bytes:
        if path == Path(f"/proc/{child.pid}/cmdline"):
            return next(empty_reads, None) or real(path)
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", flaky)
    assert owned_pid(pid_file, marker) == child.pid


def test_a_dead_process_is_not_owned(live_child) -> None:  # type: ignore[no-untyped-def]
    child, pid_file, marker = live_child
    child.kill()
    child.wait()
    assert owned_pid(pid_file, marker) is None
