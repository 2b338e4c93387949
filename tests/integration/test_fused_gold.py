"""In the fused topology a gold table fed by several topics is exact whichever of them run:
a run of one topic runs the gold tables it feeds after its silver, reading the others'
silver as it is."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from devstack.generator.customers import CustomerChanges
from devstack.generator.shop import FaultRates
from streaming.config import Settings
from streaming.runner import run_streams, stream_ids
from tests.gold_oracle import actual_gold, expected_gold, send_changes
from tests.helpers import START, produce_shop

pytestmark = pytest.mark.integration


def test_one_topic_at_a_time_keeps_a_gold_table_of_two_topics_exact(
    spark: SparkSession, shop: Settings
) -> None:
    orders, payments, customers = shop.pipeline.sources
    assert shop.pipeline.topology == "fused"
    # A fused run of the orders topic runs (and holds the lock of) every gold table orders feed.
    assert "gold:customer_orders" in stream_ids(shop, [orders], ["bronze", "silver", "gold"])
    changes = send_changes(
        shop,
        CustomerChanges(
            71, START, faults=FaultRates.parse("duplicates"), initial=30, topic=customers.topic
        ),
        90,
    )
    events = produce_shop(shop, 400, seed=71)
    run_streams(spark, shop, [orders.topic], available_now=True)  # customers not read yet
    run_streams(spark, shop, [customers.topic], available_now=True)
    events += produce_shop(shop, 200, seed=72)
    run_streams(spark, shop, [orders.topic, payments.topic], available_now=True)
    assert actual_gold(spark, shop) == expected_gold(events, changes, orders.topic)
