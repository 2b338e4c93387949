"""Debezium change events of Postgres table public.customers, as the connector would send them.

Until the Postgres/Debezium path runs, the generator stands in for it: the same JSON envelope
(converter schemas off), the same key (`{"customer_id": ...}`), a tombstone after each delete,
and a strictly increasing `source.lsn`. Deterministic under a seed, like the shop's events.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.generator.shop import FaultRates, Record

CUSTOMERS_TOPIC = "shop.public.customers"
COUNTRIES = ("DE", "FR", "GB", "US", "JP", "NL", "ES", "IT")
SEGMENTS = ("consumer", "business", "vip")
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Leslie", "Radia")
LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Lamport",
    "Perlman",
)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CustomerChanges:
    """Snapshot reads of `initial` customers, then inserts, updates and deletes.

    Faults: `duplicates` resends an earlier change; `out_of_order` holds a change back and
    sends it after newer ones (its lsn stays where the database put it).
    """

    def __init__(
        self,
        seed: int,
        start_time: datetime,
        rate: float = 20.0,
        faults: FaultRates | None = None,
        initial: int = 50,
        topic: str = CUSTOMERS_TOPIC,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = start_time.astimezone(UTC)
        self.step = timedelta(seconds=1.0 / rate)
        self.faults = faults or FaultRates()
        self.topic = topic
        self.lsn = 23_000_000
        self.tx = 700
        self.rows: dict[str, dict[str, Any]] = {}
        self.next_id = 1
        self._snapshot = [self._new_row() for _ in range(initial)]
        self._queue: list[Record] = []
        self._held: list[tuple[int, Record]] = []
        self._sent: list[Record] = []
        self._count = 0

    def __iter__(self) -> Iterator[Record]:
        while True:
            yield self.next_record()

    def next_record(self) -> Record:
        self._count += 1
        for i, (due, held) in enumerate(self._held):
            if due <= self._count:
                del self._held[i]
                return held
        if not self._queue:
            self._queue.extend(self._next_change())
        record = self._queue.pop(0)
        if record.value is not None and self._sent and self._chance("duplicates"):
            self._queue.insert(0, record)
            original = self.rng.choice(self._sent[-200:])
            return Record(
                original.topic, original.key, original.value, "duplicates", original.headers
            )
        if record.value is not None and self._chance("out_of_order"):
            self._held.append(
                (
                    self._count + self.rng.randint(2, 8),
                    Record(record.topic, record.key, record.value, "out_of_order"),
                )
            )
            return self.next_record()
        if record.value is not None:
            self._sent.append(record)
        return record

    def _chance(self, fault: str) -> bool:
        rate = self.faults[fault]
        return rate > 0 and self.rng.random() < rate

    def _new_row(self) -> dict[str, Any]:
        customer_id = f"C{self.next_id:05d}"
        self.next_id += 1
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        return {
            "customer_id": customer_id,
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{self.next_id}@example.com",
            "country": self.rng.choice(COUNTRIES),
            "segment": self.rng.choices(SEGMENTS, weights=(70, 25, 5))[0],
            "updated_at": _iso(self.clock),
        }

    def _next_change(self) -> list[Record]:
        self.clock += self.step
        self.tx += 1
        if self._snapshot:
            row = self._snapshot.pop(0)
            self.rows[row["customer_id"]] = row
            return [self._envelope("r", None, row)]
        roll = self.rng.random()
        if roll < 0.3 or len(self.rows) < 5:
            row = self._new_row()
            self.rows[row["customer_id"]] = row
            return [self._envelope("c", None, row)]
        customer_id = self.rng.choice(sorted(self.rows))
        before = self.rows[customer_id]
        if roll < 0.9:
            after = dict(before, updated_at=_iso(self.clock))
            what = self.rng.randrange(3)
            if what == 0:
                after["country"] = self.rng.choice([c for c in COUNTRIES if c != before["country"]])
            elif what == 1:
                after["segment"] = self.rng.choice([s for s in SEGMENTS if s != before["segment"]])
            else:
                after["email"] = f"{customer_id.lower()}.{self.tx}@example.org"
            self.rows[customer_id] = after
            return [self._envelope("u", before, after)]
        del self.rows[customer_id]
        delete = self._envelope("d", before, None)
        return [delete, Record(self.topic, delete.key, None, None)]  # the tombstone

    def _envelope(
        self, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None
    ) -> Record:
        self.lsn += self.rng.randint(8, 400)
        ts_ms = int(self.clock.timestamp() * 1000)
        row = after or before
        assert row is not None
        value = {
            "before": before,
            "after": after,
            "source": {
                "version": "3.4.0.Final",
                "connector": "postgresql",
                "name": "shop",
                "ts_ms": ts_ms,
                "snapshot": "true" if op == "r" else "false",
                "db": "shop",
                "schema": "public",
                "table": "customers",
                "txId": self.tx,
                "lsn": self.lsn,
            },
            "op": op,
            "ts_ms": ts_ms + self.rng.randint(1, 40),
        }
        key = json.dumps({"customer_id": row["customer_id"]}, separators=(",", ":")).encode()
        return Record(self.topic, key, json.dumps(value, separators=(",", ":")).encode(), None)
