"""The query that writes each stream of the pipeline, in either topology: what the supervisor
reads heartbeats by and what the progress table names."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming.config import load_settings
from streaming.runner import query_names

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_fused_queries_write_a_topics_bronze_and_silver_and_gold_has_its_own_in_both() -> None:
    fused = load_settings(REPO / "conf", "local", environ={})
    assert fused.pipeline.topology == "fused"
    assert query_names(fused) == {
        "bronze:shop.orders": "fused_shop_orders",
        "bronze:shop.payments": "fused_shop_payments",
        "bronze:shop.public.customers": "fused_shop_public_customers",
        "silver:shop.orders": "fused_shop_orders",
        "silver:shop.payments": "fused_shop_payments",
        "silver:shop.public.customers": "fused_shop_public_customers",
        # Gold follows silver with a query per table in both topologies.
        "gold:customer_orders": "gold_customer_orders",
        "gold:revenue_per_minute": "gold_revenue_per_minute",
    }
    layered = fused.model_copy(
        update={"pipeline": fused.pipeline.model_copy(update={"topology": "layered"})}
    )
    assert query_names(layered) == {
        "bronze:shop.orders": "bronze_shop_orders",
        "bronze:shop.payments": "bronze_shop_payments",
        "bronze:shop.public.customers": "bronze_shop_public_customers",
        "silver:shop.orders": "silver_shop_orders",
        "silver:shop.payments": "silver_shop_payments",
        "silver:shop.public.customers": "silver_shop_public_customers",
        "gold:customer_orders": "gold_customer_orders",
        "gold:revenue_per_minute": "gold_revenue_per_minute",
    }
