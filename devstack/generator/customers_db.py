"""The demo shop's customers, changed in PostgreSQL: inserts, updates (country, segment,
email) and deletes of public.customers, in transactions of one to a few statements, at a
rate. Debezium turns each committed change into a Kafka record.

Which rows change and how is deterministic under a seed (the database's timing is not).
Every committed change is returned in order, so a test can count them per key.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from devstack.generator.customers import COUNTRIES, FIRST, LAST, SEGMENTS
from devstack.services.postgres import connect
from streaming.config import Settings

Op = Literal["c", "u", "d"]
COLUMNS = ("customer_id", "name", "email", "country", "segment")


@dataclass(frozen=True)
class Change:
    """One committed change of public.customers: the op as Debezium names it, the key, and
    the row's values after it (None after a delete)."""

    op: Op
    customer_id: str
    row: dict[str, Any] | None


@dataclass
class WorkloadReport:
    transactions: int = 0
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        ops = {op: sum(1 for c in self.changes if c.op == op) for op in ("c", "u", "d")}
        return (
            f"{len(self.changes):,} changes in {self.transactions:,} transactions "
            f"({ops['c']:,} inserts, {ops['u']:,} updates, {ops['d']:,} deletes) "
            f"in {self.seconds:.1f} s"
        )


class CustomerWorkload:
    """Chooses the statements of each transaction; knows which customers exist."""

    def __init__(
        self,
        seed: int,
        existing: list[str] | None = None,
        max_statements: int = 4,
        delete_share: float = 0.1,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.ids: list[str] = sorted(existing or [])
        self.max_statements = max_statements
        self.delete_share = delete_share
        # New customers continue the shop's numbering (C00001, ...), the ids its orders use.
        numbers = [int(i[1:]) for i in self.ids if re.fullmatch(r"C\d+", i)]
        self._n = max(numbers, default=0)

    def transaction(self) -> list[Change]:
        """The changes of the next transaction (not yet applied)."""
        changes: list[Change] = []
        live = set(self.ids)
        for _ in range(self.rng.randint(1, self.max_statements)):
            roll = self.rng.random()
            if not live or roll < 0.35:
                customer_id = self._new_id()
                live.add(customer_id)
                changes.append(Change("c", customer_id, self._new_row(customer_id)))
            elif roll < 0.35 + self.delete_share:
                customer_id = self.rng.choice(sorted(live))
                live.discard(customer_id)
                changes.append(Change("d", customer_id, None))
            else:
                customer_id = self.rng.choice(sorted(live))
                changes.append(Change("u", customer_id, self._changed_values()))
        return changes

    def committed(self, changes: list[Change]) -> None:
        ids = set(self.ids)
        for change in changes:
            if change.op == "d":
                ids.discard(change.customer_id)
            else:
                ids.add(change.customer_id)
        self.ids = sorted(ids)

    def _new_id(self) -> str:
        self._n += 1
        return f"C{self._n:05d}"

    def _new_row(self, customer_id: str) -> dict[str, Any]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        return {
            "customer_id": customer_id,
            "name": f"{first} {last}",
            "email": f"{first}.{last}.{self.rng.randrange(10_000)}@example.com".lower(),
            "country": self.rng.choice(COUNTRIES),
            "segment": self.rng.choice(SEGMENTS),
        }

    def _changed_values(self) -> dict[str, Any]:
        what = self.rng.choice(("country", "segment", "email"))
        if what == "country":
            return {"country": self.rng.choice(COUNTRIES)}
        if what == "segment":
            return {"segment": self.rng.choice(SEGMENTS)}
        return {"email": f"user.{self.rng.randrange(1_000_000)}@example.org"}


def existing_customers(settings: Settings) -> list[str]:
    with connect(settings) as db:
        return [r[0] for r in db.execute("SELECT customer_id FROM public.customers").fetchall()]


def apply(db: Any, changes: list[Change]) -> list[Change]:
    """Run one transaction's changes; returns those that changed a row, each with the row as
    it is after the change (a row someone else inserted or deleted first is skipped)."""
    from psycopg import sql

    done: list[Change] = []
    for change in changes:
        if change.op == "c":
            assert change.row is not None
            row = db.execute(
                "INSERT INTO public.customers (customer_id, name, email, country, segment, "
                "updated_at) VALUES (%(customer_id)s, %(name)s, %(email)s, %(country)s, "
                "%(segment)s, clock_timestamp()) ON CONFLICT (customer_id) DO NOTHING "
                "RETURNING *",
                change.row,
            ).fetchone()
        elif change.op == "u":
            assert change.row is not None
            [(column, value)] = change.row.items()
            row = db.execute(
                sql.SQL(
                    "UPDATE public.customers SET {} = %s, updated_at = clock_timestamp() "
                    "WHERE customer_id = %s RETURNING *"
                ).format(sql.Identifier(column)),
                [value, change.customer_id],
            ).fetchone()
        else:
            gone = db.execute(
                "DELETE FROM public.customers WHERE customer_id = %s RETURNING customer_id",
                [change.customer_id],
            ).fetchone()
            if gone is not None:
                done.append(Change("d", change.customer_id, None))
            continue
        if row is not None:  # None: someone else took the id, or deleted the row, first
            done.append(Change(change.op, change.customer_id, _as_dict(row)))
    return done


def _as_dict(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {name: row[i] for i, name in enumerate((*COLUMNS, "updated_at"))}


def run_workload(
    settings: Settings,
    workload: CustomerWorkload,
    *,
    rate: float | None = None,
    count: int | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    on_commit: Callable[[list[Change]], None] | None = None,
) -> WorkloadReport:
    """Commit the workload's transactions, paced at `rate` changes per second (None: as fast
    as possible), until `count` changes, `seconds` elapsed or `stop` is set."""
    report = WorkloadReport()
    started = time.monotonic()
    with connect(settings) as db:
        while True:
            elapsed = time.monotonic() - started
            if (
                (stop is not None and stop.is_set())
                or (count is not None and len(report.changes) >= count)
                or (seconds is not None and elapsed >= seconds)
            ):
                break
            changes = workload.transaction()
            if count is not None:
                changes = changes[: count - len(report.changes)]
            with db.transaction():
                done = apply(db, changes)
            workload.committed(done)
            report.transactions += 1
            report.changes += done
            if on_commit is not None:
                on_commit(done)
            if rate:
                ahead = len(report.changes) / rate - (time.monotonic() - started)
                if ahead > 0:
                    if stop is not None:
                        stop.wait(ahead)
                    else:
                        time.sleep(ahead)
    report.seconds = time.monotonic() - started
    return report
