"""Dagster runs the pipeline for real: the micro-batch job moves every record through all
layers exactly (over the real broker and Delta), and a backfill of two days rebuilds them
from bronze to what the streams wrote, the same each time."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from devstack.generator.customers import CustomerChanges
from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates, ShopSimulator
from orchestration.defs.bronze.assets import bronze_tables, kafka_topics
from orchestration.defs.gold.assets import gold_assets
from orchestration.defs.micro_batch.jobs import JOB, micro_batch_job
from orchestration.defs.partitions import today
from orchestration.defs.quality.checks import quality_checks
from orchestration.defs.resources import HeadwaterResource
from orchestration.defs.silver.assets import silver_assets
from streaming.catalog import pipeline_tables
from streaming.config import Settings, load_settings
from streaming.kafka_client import ensure_topics
from streaming.reconcile import reconcile
from streaming.tables import read_delta
from tests.gold_oracle import actual_gold, expected_gold, send_changes
from tests.helpers import START

pytestmark = pytest.mark.integration

DAY1, DAY2 = START.date().isoformat(), (START + timedelta(days=1)).date().isoformat()


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *kafka_topics(settings),
            bronze_tables(settings),
            *silver_assets(settings),
            *gold_assets(settings),
        ],
        asset_checks=quality_checks(settings),
        jobs=[micro_batch_job(settings)],
        resources={
            "headwater": HeadwaterResource(conf_dir=str(settings.conf_dir), profile="local")
        },
    )


def send_days(settings: Settings) -> list[Delivered]:
    """Shop events of two days, every fault on."""
    orders, payments = settings.pipeline.sources[0].topic, settings.pipeline.sources[1].topic
    ensure_topics(settings.profile.kafka, settings.pipeline.sources)
    sent: list[Delivered] = []
    for n, start in enumerate((START, START + timedelta(days=1))):
        simulator = ShopSimulator(
            70 + n,
            start,
            faults=FaultRates.parse("all"),
            orders_topic=orders,
            payments_topic=payments,
        )
        sent += produce(
            settings.profile.kafka, simulator, count=150, keep_deliveries=True
        ).deliveries
    return sent


def contents(spark: SparkSession, settings: Settings) -> dict[str, Counter[str]]:
    """Every silver, quarantine, duplicates and gold table's rows, as a multiset."""
    out = {}
    for table in pipeline_tables(settings):
        if table.layer == "bronze":
            continue
        frame = read_delta(spark, table.path)
        assert frame is not None, table.qualified
        columns = sorted(frame.columns)
        out[table.qualified] = Counter(repr(r) for r in frame.select(*columns).collect())
    return out


def delta_versions(spark: SparkSession, settings: Settings) -> dict[str, int]:
    from delta.tables import DeltaTable

    return {
        t.qualified: int(DeltaTable.forPath(spark, t.path).history(1).first().version)  # type: ignore[union-attr]
        for t in pipeline_tables(settings)
        if t.layer != "bronze"
    }


def backfill(settings: Settings) -> dg.ExecuteInProcessResult:
    """What a backfill of DAY1..DAY2 launches: one run over the range (single-run policy)."""
    selection = [
        dg.AssetKey([t.layer, t.name]) for t in pipeline_tables(settings) if t.layer != "bronze"
    ]
    return dg.materialize(
        [
            *kafka_topics(settings),
            bronze_tables(settings),
            *silver_assets(settings),
            *gold_assets(settings),
        ],
        selection=selection,
        resources={
            "headwater": HeadwaterResource(conf_dir=str(settings.conf_dir), profile="local")
        },
        tags={
            "dagster/backfill": "test",
            "dagster/asset_partition_range_start": DAY1,
            "dagster/asset_partition_range_end": DAY2,
        },
    )


def test_micro_batch_job_is_exact_and_a_backfill_rebuilds_the_same_tables_twice(
    spark: SparkSession, shop: Settings
) -> None:
    events = send_days(shop)
    database = CustomerChanges(
        71,
        START,
        faults=FaultRates.parse("duplicates=0.05,out_of_order=0.1"),
        initial=40,
        topic=shop.pipeline.sources[2].topic,
    )
    changes = send_changes(shop, database, 80)

    print("produced; micro-batch run", flush=True)
    run = definitions(shop).resolve_job_def(JOB).execute_in_process(partition_key=today())
    assert run.success
    materialized = {e.asset_key for e in run.get_asset_materialization_events()}
    assert materialized == {dg.AssetKey([t.layer, t.name]) for t in pipeline_tables(shop)}
    by_key = {
        e.asset_key: e.materialization.metadata for e in run.get_asset_materialization_events()
    }
    orders_meta = by_key[dg.AssetKey(["silver", "orders"])]
    assert orders_meta["mode"] == dg.MetadataValue.text("catch_up")
    assert orders_meta["rows_read"].value == sum(
        1 for d in events if d.topic == shop.pipeline.sources[0].topic
    )
    assert orders_meta["delta_version"].value >= 1 and orders_meta["files"].value >= 1
    assert "batch_duration_ms_max" in orders_meta and "input_rows_per_second" in orders_meta
    bronze_meta = by_key[dg.AssetKey(["bronze", shop.pipeline.sources[0].table_name])]
    assert bronze_meta["rows_written"].value == orders_meta["rows_read"].value

    # Every layer exact: the oracle computes gold from what was produced, in plain Python.
    assert actual_gold(spark, shop) == expected_gold(
        events, changes, shop.pipeline.sources[0].topic
    )
    assert reconcile(spark, shop).ok
    streamed = contents(spark, shop)
    assert streamed["silver.orders"] and streamed["gold.revenue_per_minute"]
    silver_orders = read_delta(spark, shop.table_path("silver", "orders"))
    assert silver_orders is not None
    days = {str(r.event_date) for r in silver_orders.select("event_date").distinct().collect()}
    assert {DAY1, DAY2} <= days

    versions = delta_versions(spark, shop)
    print("streamed and checked; backfill", flush=True)
    first = backfill(shop)
    assert first.success
    rebuilt = {
        e.asset_key: e.materialization.metadata for e in first.get_asset_materialization_events()
    }
    assert rebuilt[dg.AssetKey(["silver", "orders"])]["mode"] == dg.MetadataValue.text("rebuild")
    assert rebuilt[dg.AssetKey(["silver", "orders"])]["rows_rebuilt"].value > 0
    after_first = delta_versions(spark, shop)
    # Silver and gold were rewritten (quarantine and duplicates hold nothing of those ingest
    # days: everything was ingested today).
    rewritten = {t for t in versions if after_first[t] > versions[t]}
    assert {t for t in versions if t.split(".")[0] in ("silver", "gold")} <= rewritten
    assert contents(spark, shop) == streamed

    print("backfill again", flush=True)
    second = backfill(shop)
    assert second.success
    assert contents(spark, shop) == streamed
    assert reconcile(spark, shop).ok

    # A blocking check that fails stops what is downstream: an expectation no order meets.
    with (shop.conf_dir / "pipeline.yaml").open("a") as conf:
        conf.write(
            "orchestration:\n  expectations:\n    silver.orders:\n"
            "      - {expectation: between, column: amount, max: 0}\n"
        )
    strict = load_settings(shop.conf_dir, "local", environ={})
    # (silver.orders and the gold downstream of it: the rest of the job plays no part here)
    blocked = (
        definitions(strict)
        .resolve_job_def(JOB)
        .execute_in_process(
            partition_key=today(),
            raise_on_error=False,
            asset_selection=[
                # silver.orders is one multi-asset with its quarantine and duplicates tables
                dg.AssetKey(["silver", "orders"]),
                dg.AssetKey(["quarantine", shop.pipeline.sources[0].table_name]),
                dg.AssetKey(["duplicates", shop.pipeline.sources[0].table_name]),
                dg.AssetKey(["gold", "revenue_per_minute"]),
                dg.AssetKey(["gold", "customer_orders"]),
            ],
        )
    )
    assert not blocked.success
    failed = [
        e.asset_check_evaluation_data
        for e in blocked.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and not e.asset_check_evaluation_data.passed
    ]
    [orders_check] = [c for c in failed if c.asset_key == dg.AssetKey(["silver", "orders"])]
    assert orders_check.check_name == "expectations_error"
    assert "amount" in str(orders_check.metadata)
    written = {e.asset_key for e in blocked.get_asset_materialization_events()}
    assert dg.AssetKey(["silver", "orders"]) in written
    assert dg.AssetKey(["gold", "revenue_per_minute"]) not in written
    assert dg.AssetKey(["gold", "customer_orders"]) not in written
