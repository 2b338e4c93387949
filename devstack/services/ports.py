"""Free loopback ports for services started on this machine (tests, the benchmark, the demo's
helpers): one allocator per process that never hands out a port twice.

Binding port 0 and closing the socket at once, as each caller used to, lets the kernel hand
the same number out again to the next caller, and a port from the kernel's ephemeral range
may also be taken, before the service binds it, as the source port of any outgoing
connection (a Kafka client's, say). So the allocator picks from below the ephemeral range,
keeps every port of one request bound until all of them are chosen, and remembers what it
handed out for the life of the process.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from pathlib import Path

LOOPBACK = "127.0.0.1"
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Above the ports services conventionally claim (Kafka's 9092, Dagster's 3000, Postgres's
# 5432, Spark's 7077 and 8080 ...), below the kernel's ephemeral range.
LOWEST = 10_000


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default where unknown)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return 32_768, 60_999
    return low, high


class PortAllocator:
    """Hands out loopback ports that are free when chosen and distinct for its lifetime."""

    def __init__(self, host: str = LOOPBACK, candidates: range | None = None) -> None:
        self.host = host
        if candidates is None:
            low, _ = ephemeral_range()
            candidates = range(LOWEST, low) if low - LOWEST >= 1_000 else range(0)
        self._candidates = candidates
        self._handed_out: set[int] = set()
        self._lock = threading.Lock()
        self._random = random.Random()

    def ports(self, count: int) -> list[int]:
        """`count` distinct ports, each bindable on the host at the moment it is returned and
        never returned before by this allocator.

        Raises RuntimeError when the machine has no such ports left."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        with self._lock, contextlib.ExitStack() as held:
            chosen: list[int] = []
            attempts = 0
            while len(chosen) < count:
                attempts += 1
                if attempts > 200 + 20 * count:
                    raise RuntimeError(
                        f"no free loopback port found on {self.host} after {attempts - 1} tries; "
                        "stop services you no longer need"
                    )
                sock = self._bind_one()
                if sock is None:
                    continue
                held.enter_context(sock)
                port = int(sock.getsockname()[1])
                if port in self._handed_out:
                    continue  # kept bound until the request ends, so it is not offered again
                chosen.append(port)
                self._handed_out.add(port)
            return chosen

    def port(self) -> int:
        """One port, as `ports(1)`."""
        return self.ports(1)[0]

    def _bind_one(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        candidate = self._random.choice(self._candidates) if self._candidates else 0
        try:
            sock.bind((self.host, candidate))
        except OSError:
            sock.close()
            return None
        return sock


_ALLOCATOR = PortAllocator()


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports from this process's one allocator."""
    return _ALLOCATOR.ports(count)


def free_port() -> int:
    """One free loopback port from this process's one allocator."""
    return _ALLOCATOR.port()
