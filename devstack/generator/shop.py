"""The demo shop of docs/demo-domain.md as a deterministic stream of Kafka records.

`ShopSimulator(seed, start_time, rate, faults)` yields orders and payments (and, on request,
faulty records) one at a time. Everything but the wall clock is drawn from one `random.Random`
seeded with `seed`, and event times come from a simulated clock (`start_time` plus one
`1/rate` step per record), so the same seed, start time and rate give byte-identical records.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ORDERS_TOPIC = "shop.orders"
PAYMENTS_TOPIC = "shop.payments"

CURRENCIES = ("EUR", "USD", "GBP", "JPY")
PAYMENT_METHODS = ("card", "bank_transfer", "wallet")
FAULT_KINDS = (
    "duplicates",  # an earlier record sent again: same key, same value
    "late",  # event_time minutes to hours in the past (inside the 24 h horizon)
    "out_of_order",  # held back and sent after a few newer records
    "malformed",  # not valid JSON (truncated or not UTF-8)
    "violations",  # valid JSON that breaks one contract rule
    "v2",  # order events of contract version 2 (with coupon_code)
    "null_values",  # a record with a null value on an event topic
    "unknown_version",  # a schema_version no contract knows
)
DEFAULT_FAULT_RATES: Mapping[str, float] = {
    "duplicates": 0.03,
    "late": 0.02,
    "out_of_order": 0.03,
    "malformed": 0.01,
    "violations": 0.02,
    "v2": 0.10,
    "null_values": 0.005,
    "unknown_version": 0.005,
}


@dataclass(frozen=True)
class Record:
    """One Kafka record the generator sends, with the fault it carries (None when clean)."""

    topic: str
    key: bytes
    value: bytes | None
    fault: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault per record; all zero by default."""

    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault '{kind}': choose from {', '.join(FAULT_KINDS)}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate of '{kind}' must be between 0 and 1, got {rate}")

    def __getitem__(self, kind: str) -> float:
        return self.rates.get(kind, 0.0)

    @classmethod
    def parse(cls, spec: str | None) -> FaultRates:
        """'all', 'none', or 'duplicates,malformed=0.05,...' (a bare name takes its default)."""
        if not spec or spec == "none":
            return cls({})
        if spec == "all":
            return cls(dict(DEFAULT_FAULT_RATES))
        rates: dict[str, float] = {}
        for part in spec.split(","):
            name, _, value = part.strip().partition("=")
            name = name.strip().replace("-", "_")
            if name not in FAULT_KINDS:
                raise ValueError(f"unknown fault '{name}': choose from {', '.join(FAULT_KINDS)}")
            try:
                rates[name] = float(value) if value else DEFAULT_FAULT_RATES[name]
            except ValueError:
                raise ValueError(f"fault rate '{value}' of '{name}' is not a number") from None
        return cls(rates)


def _iso_ms(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _amount(cents: int) -> float:
    # decimal(12,2) on the wire: a JSON number with at most two decimals
    return round(cents / 100, 2)


class ShopSimulator:
    """An endless, deterministic stream of the shop's order and payment records."""

    def __init__(
        self,
        seed: int,
        start_time: datetime,
        rate: float = 100.0,
        faults: FaultRates | None = None,
        customers: int = 500,
        orders_topic: str = ORDERS_TOPIC,
        payments_topic: str = PAYMENTS_TOPIC,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rng = random.Random(seed)
        self.clock = start_time.astimezone(UTC)
        self.step = timedelta(seconds=1.0 / rate)
        self.faults = faults or FaultRates()
        self.orders_topic = orders_topic
        self.payments_topic = payments_topic
        self.customers = [f"C{n:05d}" for n in range(1, customers + 1)]
        self._order_seq = 0
        self._payment_seq = 0
        self._placed: deque[dict[str, Any]] = deque(maxlen=2000)  # orders that may be cancelled
        self._recent: deque[Record] = deque(maxlen=500)  # clean records a duplicate copies
        self._awaiting_payment: list[dict[str, Any]] = []  # orders whose payment comes next
        self._held: list[tuple[int, Record]] = []  # out-of-order records, released later
        self._emitted = 0

    def __iter__(self) -> Iterator[Record]:
        while True:
            yield self.next_record()

    # --- the stream ------------------------------------------------------------------

    def next_record(self) -> Record:
        """The next record to send."""
        self._emitted += 1
        for i, (release_at, held) in enumerate(self._held):
            if release_at <= self._emitted:
                del self._held[i]
                return held
        self.clock += self.step
        if self.faults["duplicates"] and self._recent and self._chance("duplicates"):
            original = self.rng.choice(self._recent)
            return Record(
                original.topic, original.key, original.value, "duplicates", original.headers
            )
        if self._awaiting_payment:
            record = self._payment_record(self._awaiting_payment.pop(0))
        else:
            record = self._business_record()
        if record.fault is None and self._chance("out_of_order"):
            held = Record(record.topic, record.key, record.value, "out_of_order", record.headers)
            self._held.append((self._emitted + self.rng.randint(2, 6), held))
            return self.next_record()
        return record

    def _chance(self, fault: str) -> bool:
        rate = self.faults[fault]
        return rate > 0 and self.rng.random() < rate

    def _business_record(self) -> Record:
        if self._placed and self.rng.random() < 0.05:
            order = self.rng.choice(self._placed)
            return self._order_record(order, "OrderCancelled")
        self._order_seq += 1
        order = {
            "order_id": f"O{self._order_seq:09d}-{self.rng.getrandbits(32):08x}",
            "customer_id": self.rng.choice(self.customers),
            "amount_cents": self.rng.randint(100, 50_000),
            "currency": self.rng.choices(CURRENCIES, weights=(50, 30, 15, 5))[0],
            "items": self.rng.randint(1, 5),
        }
        self._placed.append(order)
        if self.rng.random() < 0.9:
            self._awaiting_payment.append(order)
        return self._order_record(order, "OrderPlaced")

    # --- records ---------------------------------------------------------------------

    def _event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _event_time(self) -> tuple[datetime, str | None]:
        if self._chance("late"):
            return self.clock - timedelta(minutes=self.rng.randint(5, 180)), "late"
        return self.clock, None

    def _order_record(self, order: dict[str, Any], event_type: str) -> Record:
        event_time, fault = self._event_time()
        event: dict[str, Any] = {
            "event_id": self._event_id(),
            "event_type": event_type,
            "event_time": _iso_ms(event_time),
            "schema_version": 1,
            "order_id": order["order_id"],
            "customer_id": order["customer_id"],
            "amount": _amount(order["amount_cents"]),
            "currency": order["currency"],
            "items": order["items"],
        }
        if self._chance("v2"):
            event["schema_version"] = 2
            event["coupon_code"] = self.rng.choice([None, "WELCOME10", "SPRING5", "VIP20"])
            fault = fault or "v2"
        return self._finish(self.orders_topic, order["order_id"], event, fault)

    def _payment_record(self, order: dict[str, Any]) -> Record:
        self._payment_seq += 1
        event_time, fault = self._event_time()
        event = {
            "event_id": self._event_id(),
            "event_type": "PaymentSucceeded" if self.rng.random() < 0.92 else "PaymentFailed",
            "event_time": _iso_ms(event_time),
            "schema_version": 1,
            "payment_id": f"P{self._payment_seq:09d}",
            "order_id": order["order_id"],
            "amount": _amount(order["amount_cents"]),
            "currency": order["currency"],
            "method": self.rng.choice(PAYMENT_METHODS),
        }
        return self._finish(self.payments_topic, order["order_id"], event, fault)

    def _finish(self, topic: str, key: str, event: dict[str, Any], fault: str | None) -> Record:
        headers: tuple[tuple[str, bytes], ...] = (("producer", b"headwater-generator"),)
        if self._chance("violations"):
            self._break_a_rule(event)
            fault = "violations"
        elif self._chance("unknown_version"):
            event["schema_version"] = 99
            fault = "unknown_version"
        value: bytes | None = json.dumps(event, separators=(",", ":")).encode()
        if self._chance("null_values"):
            value, fault = None, "null_values"
        elif self._chance("malformed"):
            value, fault = self._malform(value or b""), "malformed"
        record = Record(topic, key.encode(), value, fault, headers)
        if fault in (None, "late", "v2"):
            self._recent.append(record)
        return record

    def _break_a_rule(self, event: dict[str, Any]) -> None:
        rule = self.rng.randrange(5)
        if rule == 0:
            event["amount"] = -abs(event["amount"]) - 1
        elif rule == 1:
            event["currency"] = "XXX"
        elif rule == 2 and "items" in event:
            event["items"] = 0
        elif rule == 3:
            event["event_type"] = "OrderShipped" if "items" in event else "PaymentRefunded"
        else:
            event.pop("event_time")

    def _malform(self, value: bytes) -> bytes:
        if self.rng.random() < 0.5:
            return value[: self.rng.randint(1, max(1, len(value) - 2))]
        return b"\xff\xfe" + value[5:]
