"""The whole flow over the real broker, every fault on: bronze, silver, quarantine, duplicates,
CDC and gold all equal what a plain-Python oracle computes from what was produced."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from streaming.config import Settings
from streaming.generator.customers import CustomerChanges
from streaming.generator.producer import Delivered, produce
from streaming.generator.shop import FaultRates
from streaming.kafka_client import end_offsets, ensure_topics
from streaming.reconcile import reconcile
from streaming.runner import run_streams
from streaming.tables import read_table
from tests.helpers import START, produce_shop
from tests.integration.test_silver_cdc import oracle as cdc_oracle
from tests.integration.test_silver_events import oracle as events_oracle

pytestmark = pytest.mark.e2e


def send_changes(settings: Settings, changes: CustomerChanges, count: int) -> list[Delivered]:
    ensure_topics(settings.profile.kafka, [settings.pipeline.sources[2]])
    return produce(settings.profile.kafka, changes, count=count, keep_deliveries=True).deliveries


def expected_gold(
    events: list[Delivered], changes: list[Delivered], orders_topic: str
) -> tuple[dict[tuple[Any, ...], tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    silver, _, _ = events_oracle(events, orders_topic)
    values = {(d.topic, d.partition, d.offset): d.value for d in events}
    orders = [json.loads(values[where] or b"") for where in silver if where[0] == orders_topic]
    revenue: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, Decimal("0")])
    customers: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal("0"), None])
    for o in orders:
        t = datetime.fromisoformat(o["event_time"].replace("Z", "+00:00")).replace(tzinfo=None)
        slot = revenue[(t.replace(second=0, microsecond=0), o["currency"])]
        if o["event_type"] == "OrderPlaced":
            slot[0] += 1
            slot[2] += Decimal(str(o["amount"])).quantize(Decimal("0.01"))
            c = customers[o["customer_id"]]
            c[0] += 1
            c[1] += Decimal(str(o["amount"])).quantize(Decimal("0.01"))
            c[2] = t if c[2] is None else max(c[2], t)
        else:
            slot[1] += 1
    current, _ = cdc_oracle(changes)
    by_customer = {
        cid: (
            *(_name_country_segment(current[cid]) if cid in current else (None, None, None)),
            n,
            rev,
            last,
        )
        for cid, (n, rev, last) in customers.items()
    }
    return {k: tuple(v) for k, v in revenue.items()}, by_customer


def _name_country_segment(row: tuple[Any, ...]) -> tuple[Any, ...]:
    _customer_id, name, _email, country, segment = row
    return name, country, segment


def actual_gold(spark: SparkSession, settings: Settings) -> tuple[dict[Any, Any], dict[Any, Any]]:
    revenue = read_table(spark, settings, "gold.revenue_per_minute")
    customers = read_table(spark, settings, "gold.customer_orders")
    assert revenue is not None and customers is not None
    return (
        {
            (r.minute, r.currency): (r.orders_placed, r.orders_cancelled, r.revenue)
            for r in revenue.collect()
        },
        {
            r.customer_id: (
                r.name,
                r.country,
                r.segment,
                r.orders_placed,
                r.revenue,
                r.last_order_time,
            )
            for r in customers.collect()
        },
    )


def test_every_layer_is_exact_with_every_fault(spark: SparkSession, shop: Settings) -> None:
    orders = shop.pipeline.sources[0].topic
    events = produce_shop(shop, 1200, seed=41, faults="all")
    database = CustomerChanges(
        41,
        START,
        faults=FaultRates.parse("duplicates=0.05,out_of_order=0.1"),
        initial=200,
        topic=shop.pipeline.sources[2].topic,
    )
    changes = send_changes(shop, database, 400)
    run_streams(spark, shop, available_now=True)
    assert actual_gold(spark, shop) == expected_gold(events, changes, orders)

    # Later: late and out-of-order events, customers changing country or leaving.
    events += produce_shop(shop, 500, seed=42, faults="late=0.3,out_of_order=0.2,duplicates=0.1")
    changes += send_changes(shop, database, 250)  # the same database, later
    run_streams(spark, shop, available_now=True)
    revenue, customers = actual_gold(spark, shop)
    expected_revenue, expected_customers = expected_gold(events, changes, orders)
    assert revenue == expected_revenue
    assert customers == expected_customers

    # Reconciliation agrees at rest, and notices when a row goes missing.
    kafka = {
        s.topic: sum(end_offsets(shop.profile.kafka, s.topic).values())
        for s in shop.pipeline.sources
    }
    result = reconcile(spark, shop, kafka)
    assert result.ok, "\n".join(result.lines())
    sent_per_topic = Counter(d.topic for d in events + changes)
    assert {t.topic: t.bronze for t in result.topics} == dict(sent_per_topic)
    assert {g.table for g in result.gold} == {"revenue_per_minute", "customer_orders"}

    DeltaTable.forPath(spark, shop.table_path("gold", "customer_orders")).delete(
        f"customer_id = '{sorted(customers)[0]}'"
    )
    broken = reconcile(spark, shop, kafka)
    assert not broken.ok and all(t.ok for t in broken.topics)
    assert {g.table: (g.extra, g.missing) for g in broken.gold}["customer_orders"] == (0, 1)

    DeltaTable.forPath(spark, shop.table_path("silver", "orders")).delete(
        "kafka_partition = 0 AND kafka_offset = 0"
    )
    broken = reconcile(spark, shop, kafka)
    orders_counts = next(t for t in broken.topics if t.topic == orders)
    assert orders_counts.unaccounted == 1 and not orders_counts.ok
