"""The shop generator: deterministic under a seed, clean events follow the contract, and each
fault does what its name says."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from devstack.generator.shop import FAULT_KINDS, FaultRates, Record, ShopSimulator

pytestmark = pytest.mark.unit
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def take(n: int, seed: int = 7, faults: str = "none", rate: float = 100.0) -> list[Record]:
    return list(itertools.islice(ShopSimulator(seed, START, rate, FaultRates.parse(faults)), n))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_same_seed_same_records_other_seed_other_records() -> None:
    assert take(3000, seed=11, faults="all") == take(3000, seed=11, faults="all")
    assert take(300, seed=11) != take(300, seed=12)


def test_clean_events_follow_the_demo_contract() -> None:
    records = take(2000)
    assert {r.topic for r in records} == {"shop.orders", "shop.payments"}
    ids = []
    for r in records:
        assert r.fault is None and r.value is not None
        e = json.loads(r.value)
        ids.append(e["event_id"])
        assert e["schema_version"] == 1
        assert e["amount"] >= 0 and round(e["amount"], 2) == e["amount"]
        assert e["currency"] in {"EUR", "USD", "GBP", "JPY"}
        assert r.key == e["order_id"].encode()
        assert parse_time(e["event_time"]) >= START
        assert e["event_time"].endswith("Z") and len(e["event_time"]) == len(
            "2026-03-01T12:00:00.000Z"
        )
        if r.topic == "shop.orders":
            assert e["event_type"] in {"OrderPlaced", "OrderCancelled"}
            assert e["items"] >= 1 and e["customer_id"].startswith("C")
        else:
            assert e["event_type"] in {"PaymentSucceeded", "PaymentFailed"}
            assert e["method"] in {"card", "bank_transfer", "wallet"}
    assert len(ids) == len(set(ids)), "clean events never repeat an event_id"


def test_rate_sets_the_simulated_clock() -> None:
    records = take(101, rate=10.0)
    first, last = (
        parse_time(json.loads(r.value or b"")["event_time"]) for r in (records[0], records[-1])
    )
    assert last - first == timedelta(seconds=10)


def test_every_fault_appears_and_behaves() -> None:
    records = take(6000, seed=3, faults="all")
    counts = Counter(r.fault for r in records)
    assert set(FAULT_KINDS) <= set(counts), f"missing faults: {set(FAULT_KINDS) - set(counts)}"
    seen: dict[bytes | None, int] = {}
    for i, r in enumerate(records):
        if r.fault == "duplicates":
            originals = [
                j
                for j in range(i)
                if records[j].value == r.value and records[j].fault != "duplicates"
            ]
            assert originals, "a duplicate copies a record sent before it"
            assert records[originals[0]].key == r.key and records[originals[0]].topic == r.topic
        elif r.fault == "malformed":
            with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
                json.loads(r.value or b"")
        elif r.fault == "null_values":
            assert r.value is None
        elif r.fault == "unknown_version":
            assert json.loads(r.value or b"")["schema_version"] == 99
        elif r.fault == "v2":
            e = json.loads(r.value or b"")
            assert e["schema_version"] == 2 and "coupon_code" in e
        elif r.fault == "violations":
            e = json.loads(r.value or b"")
            broken = (
                e.get("amount", 0) < 0
                or e.get("currency") not in {"EUR", "USD", "GBP", "JPY"}
                or e.get("items", 1) < 1
                or e.get("event_type")
                not in {"OrderPlaced", "OrderCancelled", "PaymentSucceeded", "PaymentFailed"}
                or "event_time" not in e
            )
            assert broken, f"a violation breaks a rule: {e}"
        seen.setdefault(r.value, i)


def test_late_events_are_minutes_to_hours_behind_the_stream() -> None:
    records = take(4000, seed=5, faults="late=0.1")
    newest = START
    late = 0
    for r in records:
        t = parse_time(json.loads(r.value or b"")["event_time"])
        if r.fault == "late":
            late += 1
            assert timedelta(minutes=4) < newest - t < timedelta(hours=24)
        newest = max(newest, t)
    assert late > 100


def test_out_of_order_events_arrive_after_newer_ones() -> None:
    records = take(3000, seed=9, faults="out_of_order=0.1")
    overtaken = 0
    for i, r in enumerate(records):
        if r.fault == "out_of_order":
            t = parse_time(json.loads(r.value or b"")["event_time"])
            before = [
                parse_time(json.loads(p.value or b"")["event_time"])
                for p in records[max(0, i - 3) : i]
            ]
            overtaken += any(b > t for b in before)
    assert overtaken > 100


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("typos", "unknown fault 'typos'"),
        ("late=2", "between 0 and 1"),
        ("late=x", "is not a number"),
    ],
)
def test_bad_fault_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRates.parse(spec)


def test_named_fault_takes_its_default_rate() -> None:
    faults = FaultRates.parse("duplicates,malformed=0.5")
    assert faults["duplicates"] == 0.03 and faults["malformed"] == 0.5 and faults["late"] == 0.0
