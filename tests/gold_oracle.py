"""What gold must hold, computed in plain Python from what was produced (events and CDC
changes), and what the gold tables hold."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from pyspark.sql import SparkSession

from devstack.generator.customers import CustomerChanges
from devstack.generator.producer import Delivered, produce
from streaming.config import Settings
from streaming.kafka_client import ensure_topics
from streaming.tables import read_table
from tests.integration.test_silver_cdc import oracle as cdc_oracle
from tests.integration.test_silver_events import oracle as events_oracle


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
