"""The loopback port allocator: never the same port twice in a process, every port bindable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack.services.ports import PortAllocator, ephemeral_range, free_port, free_ports

pytestmark = pytest.mark.unit


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_many_requests_give_distinct_bindable_ports() -> None:
    allocator = PortAllocator()
    requests = [allocator.ports(9) for _ in range(12)] + [[allocator.port()] for _ in range(20)]
    every = [port for request in requests for port in request]
    assert len(every) == 9 * 12 + 20
    assert len(set(every)) == len(every)
    assert all(bindable(port) for port in every)


def test_ports_stay_outside_the_kernels_ephemeral_range() -> None:
    low, high = ephemeral_range()
    ports = PortAllocator().ports(50)
    assert not [port for port in ports if low <= port <= high]


def test_a_small_range_is_exhausted_with_a_clear_error_not_a_repeat() -> None:
    base = PortAllocator().port()
    allocator = PortAllocator(candidates=range(base, base + 1))
    assert allocator.ports(1) == [base]
    with pytest.raises(RuntimeError, match="no free loopback port"):
        allocator.ports(1)


def test_a_port_in_use_is_never_handed_out() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = int(squatter.getsockname()[1])
        allocator = PortAllocator(candidates=range(taken, taken + 1))
        with pytest.raises(RuntimeError, match="no free loopback port"):
            allocator.ports(1)


def test_the_process_allocator_is_shared() -> None:
    first = free_ports(5)
    second = [free_port() for _ in range(5)]
    assert len(set(first + second)) == 10


def test_unreadable_range_file_falls_back_to_linux_defaults(tmp_path: Path) -> None:
    broken = tmp_path / "range"
    broken.write_text("not numbers")
    assert ephemeral_range(broken) == (32_768, 60_999)
    assert ephemeral_range(tmp_path / "missing") == (32_768, 60_999)
