"""The Dagster code location mirrors conf/: Kafka topics feed bronze tables, one asset each."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from orchestration.defs.bronze.assets import bronze_tables, kafka_topics
from orchestration.defs.resources import HeadwaterResource
from streaming.config import Settings, load_settings
from tests.helpers import produce_shop

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_asset_graph_has_every_table_of_conf_with_its_lineage() -> None:
    from orchestration.definitions import defs

    graph = defs().resolve_asset_graph()
    settings = load_settings(REPO / "conf", "local", environ={})
    expected = set()
    for source in settings.pipeline.sources:
        topic = dg.AssetKey(["kafka", source.table_name])
        table = dg.AssetKey(["bronze", source.table_name])
        expected |= {topic, table}
        assert graph.get(table).parent_keys == {topic}
        assert graph.get(table).group_name == "bronze"
        assert graph.get(table).kinds == {"spark", "delta"}
        assert graph.get(topic).group_name == "kafka" and graph.get(topic).kinds == {"kafka"}
        assert not graph.get(topic).is_materializable, "Kafka topics are external sources"
        for layer in ("quarantine", "duplicates"):
            key = dg.AssetKey([layer, source.table_name])
            expected.add(key)
            assert graph.get(key).parent_keys == {table}
            assert graph.get(key).group_name == layer
    # Written out, not derived: the demo shop's silver and gold tables and what they read.
    silver = {
        "orders": "shop_orders",
        "payments": "shop_payments",
        "customers": "shop_public_customers",
        "customers_changes": "shop_public_customers",
        "customers_history": "shop_public_customers",
    }
    for name, bronze in silver.items():
        key = dg.AssetKey(["silver", name])
        expected.add(key)
        assert graph.get(key).parent_keys == {dg.AssetKey(["bronze", bronze])}
        assert graph.get(key).group_name == "silver"
        assert graph.get(key).owners == ["team:data-platform"]
    gold = {
        "revenue_per_minute": {dg.AssetKey(["silver", "orders"])},
        "customer_orders": {
            dg.AssetKey(["silver", "orders"]),
            dg.AssetKey(["silver", "customers_changes"]),
        },
    }
    for name, parents in gold.items():
        key = dg.AssetKey(["gold", name])
        expected.add(key)
        assert graph.get(key).parent_keys == parents
        assert graph.get(key).group_name == "gold"
        assert graph.get(key).kinds == {"spark", "delta"}
    assert set(graph.get_all_asset_keys()) == expected
    # Freshness policies: conf's SLA (minutes) as the fail window of every bronze, silver and
    # gold table; quarantine and duplicates may stay quiet.
    sla = settings.pipeline.orchestration.freshness
    for key in expected:
        layer = key.path[0]
        policy = graph.get(key).freshness_policy
        if layer in ("bronze", "silver", "gold"):
            assert policy is not None, key
            minutes = sla.sla_minutes(f"{layer}.{key.path[1]}")
            assert policy.fail_window.to_timedelta().total_seconds() == minutes * 60  # type: ignore[attr-defined]
        else:
            assert policy is None, key
    # Checks: contract/conf expectations (blocking) on silver and gold, reconciliation where
    # records must add up, freshness on every bronze, silver and gold table.
    specs = [graph.get_check_spec(k) for k in graph.asset_check_keys]
    checks = {(c.asset_key, c.name): c for c in specs}
    names = {(k.to_user_string(), n) for k, n in checks}
    for table in (
        "silver/orders",
        "silver/payments",
        "silver/customers",
        "gold/revenue_per_minute",
        "gold/customer_orders",
    ):
        assert (table, "expectations_error") in names
        spec = checks[(dg.AssetKey(table.split("/")), "expectations_error")]
        assert spec.blocking
    for table in (
        "silver/orders",
        "silver/payments",
        "silver/customers_changes",
        "gold/revenue_per_minute",
        "gold/customer_orders",
    ):
        assert (table, "reconciliation") in names
    for key in expected:
        if key.path[0] in ("bronze", "silver", "gold"):
            assert (key.to_user_string(), "freshness") in names
    assert {k for k, _ in checks} <= expected
    # Rows that belong to a day are partitioned by day; state tables are not.
    by_day = {k for k in expected if graph.get(k).partitions_def is not None}
    assert by_day == {
        dg.AssetKey(["silver", "orders"]),
        dg.AssetKey(["silver", "payments"]),
        dg.AssetKey(["quarantine", "shop_orders"]),
        dg.AssetKey(["quarantine", "shop_payments"]),
        dg.AssetKey(["duplicates", "shop_orders"]),
        dg.AssetKey(["duplicates", "shop_payments"]),
        dg.AssetKey(["gold", "revenue_per_minute"]),
    }


@pytest.mark.integration
def test_materializing_bronze_catches_the_selected_tables_up(
    spark: SparkSession, pipeline: Settings
) -> None:
    sent = produce_shop(pipeline, 150, seed=11)
    orders = pipeline.pipeline.sources[0]
    resource = HeadwaterResource(conf_dir=str(pipeline.conf_dir), profile="local")
    result = dg.materialize(
        [*kafka_topics(pipeline), bronze_tables(pipeline)],
        resources={"headwater": resource},
        selection=[dg.AssetKey(["bronze", orders.table_name])],
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("bronze_catch_up")
    assert materialization.asset_key == dg.AssetKey(["bronze", orders.table_name])
    expected = sum(1 for d in sent if d.topic == orders.topic)
    assert materialization.metadata["rows_written"] == dg.MetadataValue.int(expected)
    assert materialization.metadata["rows_total"] == dg.MetadataValue.int(expected)


@pytest.mark.unit
def test_dg_list_defs_shows_what_the_code_location_holds() -> None:
    """The project is a `dg` project: `dg list defs` from the repository root lists every
    asset, check, job, schedule and sensor that Dagster's UI shows."""
    import json
    import os
    import subprocess
    import sys

    from orchestration.definitions import defs

    dg_cli = Path(sys.executable).parent / "dg"
    listed = subprocess.run(
        [str(dg_cli), "list", "defs", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "HEADWATER_CONF"},
    )
    shown = json.loads(listed.stdout)
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    assert {a["asset_key"] for a in shown["assets"]} == {
        k.to_user_string() for k in graph.get_all_asset_keys()
    }
    assert {(c["asset_key"], c["name"]) for c in shown["asset_checks"]} == {
        (k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys
    }
    assert {j["name"] for j in shown["jobs"]} >= {j.name for j in loaded.jobs or []}
    assert {s["name"] for s in shown["schedules"]} == {s.name for s in loaded.schedules or []}
    assert {s["name"] for s in shown["sensors"]} == {s.name for s in loaded.sensors or []}
    assert {r["name"] for r in shown["resources"]} == {"headwater"}
