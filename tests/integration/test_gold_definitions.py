"""A gold declaration evaluated over tiny tables: whole, and for touched keys only."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from streaming.gold.definitions import GoldTable, evaluate, load_gold_tables
from tests.conftest import write_conf

pytestmark = pytest.mark.integration  # writes a real Delta table
REPO = Path(__file__).resolve().parents[2]


def test_revenue_per_minute_whole_and_for_touched_keys(spark: SparkSession, tmp_path: Path) -> None:
    settings = write_conf(tmp_path)
    (settings.conf_dir / "gold").mkdir()
    (settings.conf_dir / "gold/revenue_per_minute.yaml").write_text(
        (REPO / "conf/gold/revenue_per_minute.yaml").read_text()
    )
    [table] = load_gold_tables(settings)
    assert isinstance(table, GoldTable) and table.keys == ("minute", "currency")
    t = datetime(2026, 1, 1, 10, 0, 5)
    spark.createDataFrame(
        [
            ("OrderPlaced", t, "EUR", Decimal("10.50")),
            ("OrderPlaced", t.replace(second=40), "EUR", Decimal("2.00")),
            ("OrderCancelled", t, "EUR", Decimal("10.50")),
            ("OrderPlaced", t.replace(minute=1), "USD", Decimal("7.00")),
        ],
        "event_type string, event_time timestamp, currency string, amount decimal(12,2)",
    ).write.format("delta").save(settings.table_path("silver", "orders"))
    schema = "minute timestamp, currency string, orders_placed long, orders_cancelled long, revenue decimal(22,2)"
    whole = evaluate(spark, settings, table)
    assertDataFrameEqual(
        whole,
        spark.createDataFrame(
            [
                (datetime(2026, 1, 1, 10, 0), "EUR", 2, 1, Decimal("12.50")),
                (datetime(2026, 1, 1, 10, 1), "USD", 1, 0, Decimal("7.00")),
            ],
            schema,
        ),
    )
    touched = spark.createDataFrame(
        [("USD", datetime(2026, 1, 1, 10, 1))], "_gk_currency string, _gk_minute timestamp"
    )
    assertDataFrameEqual(
        evaluate(spark, settings, table, touched),
        spark.createDataFrame(
            [(datetime(2026, 1, 1, 10, 1), "USD", 1, 0, Decimal("7.00"))], schema
        ),
    )


def test_a_recompute_of_some_minutes_reads_only_the_files_of_those_minutes(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A key that buckets a column by time (date_trunc) bounds the source scan by that
    column, so Delta skips the files of other minutes from their statistics; the rows are
    those of the exact key join all the same."""
    settings = write_conf(tmp_path)
    (settings.conf_dir / "gold").mkdir()
    (settings.conf_dir / "gold/revenue_per_minute.yaml").write_text(
        (REPO / "conf/gold/revenue_per_minute.yaml").read_text()
    )
    [table] = load_gold_tables(settings)
    path = settings.table_path("silver", "orders")
    for minute in range(6):  # one file per minute, as a stream's batches write them
        spark.createDataFrame(
            [("OrderPlaced", datetime(2026, 1, 1, 10, minute, 30), "EUR", Decimal("1.00"))],
            "event_type string, event_time timestamp, currency string, amount decimal(12,2)",
        ).write.format("delta").mode("append").save(path)
    touched = spark.createDataFrame(
        [("EUR", datetime(2026, 1, 1, 10, 2)), ("EUR", datetime(2026, 1, 1, 10, 3))],
        "_gk_currency string, _gk_minute timestamp",
    )
    rows = evaluate(spark, settings, table, touched)
    assert sorted((r.minute.minute, r.orders_placed) for r in rows.collect()) == [(2, 1), (3, 1)]
    # The scan of silver carries the bounds of the touched minutes, what Delta skips files by.
    plan = rows._jdf.queryExecution().executedPlan().toString()
    assert re.search(r"event_time#\d+ >= 2026-01-01 10:02:00\)", plan), plan
    assert re.search(r"event_time#\d+ < 2026-01-01 10:04:00\)", plan), plan
    assert "GreaterThanOrEqual(event_time,2026-01-01 10:02:00" in plan, plan
    assert "PreparedDeltaFileIndex" in plan, plan  # Delta prepared the scan's files by them


def test_reconciliation_leaves_out_keys_that_moved_and_still_finds_a_wrong_row(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Gold reconciled while the streams write: the definition is read as of the sources'
    versions at the start; a key whose source rows changed after them may rightly differ in
    gold (unsettled, not an error), while a key whose sources stood still and that differs is
    an error."""
    from pyspark.sql import functions as F

    from streaming.reconcile import reconcile_gold

    settings = write_conf(tmp_path)
    (settings.conf_dir / "gold").mkdir()
    (settings.conf_dir / "gold/revenue_per_minute.yaml").write_text(
        (REPO / "conf/gold/revenue_per_minute.yaml").read_text()
    )
    [table] = load_gold_tables(settings)
    silver = settings.table_path("silver", "orders")
    columns = "event_type string, event_time timestamp, currency string, amount decimal(12,2)"
    t = datetime(2026, 1, 1, 10, 0, 5)
    spark.createDataFrame(
        [
            ("OrderPlaced", t, "EUR", Decimal("10.50")),
            ("OrderPlaced", t.replace(minute=1), "USD", Decimal("7.00")),
        ],
        columns,
    ).write.format("delta").save(silver)  # version 0
    gold_path = settings.table_path("gold", "revenue_per_minute")
    evaluate(spark, settings, table).write.format("delta").save(gold_path)
    assert reconcile_gold(spark, settings, table, settle_s=0).ok  # type: ignore[union-attr]

    # The stream goes on: a new order in 10:01 USD (silver version 1), and gold already has it.
    spark.createDataFrame(
        [("OrderPlaced", t.replace(minute=1, second=30), "USD", Decimal("1.00"))], columns
    ).write.format("delta").mode("append").save(silver)
    evaluate(spark, settings, table).write.format("delta").mode("overwrite").save(gold_path)
    moving = reconcile_gold(spark, settings, table, settle_s=0, pinned={"silver.orders": 0})
    assert moving is not None
    assert (moving.extra, moving.missing, moving.unsettled) == (0, 0, 1), moving
    assert moving.ok

    # A wrong row of a key that stood still (10:00 EUR) is an error all the same.
    wrong = (
        spark.read.format("delta")
        .load(gold_path)
        .withColumn(
            "orders_placed",
            F.when(F.col("currency") == "EUR", F.lit(99)).otherwise(F.col("orders_placed")),
        )
        .localCheckpoint(eager=True)
    )
    wrong.write.format("delta").mode("overwrite").save(gold_path)
    broken = reconcile_gold(spark, settings, table, settle_s=0, pinned={"silver.orders": 0})
    assert broken is not None
    assert (broken.extra, broken.missing, broken.unsettled) == (1, 1, 1), broken
    assert not broken.ok
