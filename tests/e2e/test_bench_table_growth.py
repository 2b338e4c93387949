"""bench/table_growth.py: its tables are what the silver streams would hold, and its CLI writes
well-formed results for tiny tables. It asserts what the results hold, never how fast anything
was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from bench.batch_cost import BronzeBatches
from bench.table_growth import Shop, build_tables, dedup_window_rows, table_copies
from bench.workspace import scratch_settings
from streaming.contracts.spark import ERRORS, compile_contract, silver_schema
from streaming.silver.cdc import current_rows, history_rows
from streaming.silver.events import silver_rows
from streaming.tables import read_delta

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SIZES = (2000, 20000)


def test_built_tables_are_what_the_silver_streams_would_hold(
    spark: SparkSession, tmp_path: Path
) -> None:
    shop = Shop.of(scratch_settings(REPO / "conf", "local", tmp_path))
    tables = build_tables(spark, shop, 600, days=3)
    assert set(tables) == {
        "silver.orders",
        "silver.customers",
        "silver.customers_history",
        "silver.customers_changes",
    }
    assert tables["silver.orders"]["files"] == 3  # one per event date
    assert all(t["files"] == 1 and t["bytes"] > 0 for n, t in tables.items() if "customers" in n)

    # The customer tables as the CDC writer computes them from the changes table.
    changes = read_delta(spark, shop.customers_path("_changes"))
    assert changes is not None and changes.count() == 600
    assert changes.select("customer_id").distinct().count() == 600
    assert changes.where("op = 'r'").count() == 600
    assert_same(history_rows(changes, shop.customer_contract), shop.customers_path("_history"))
    current = current_rows(changes, shop.customer_contract).drop("op")
    assert_same(current, shop.customers_path(""))

    # Order rows read back as Kafka records pass the contract and give the very same rows.
    orders = read_delta(spark, shop.orders_path)
    assert orders is not None
    assert orders.select("event_date").distinct().count() == 3
    assert dedup_window_rows(spark, shop) == 400  # START's day and the one before
    copies = table_copies(spark, shop, 50)
    assert len(copies) == 50
    checked = compile_contract(shop.order_contract).apply(
        BronzeBatches(spark, iter(copies), shop.orders.topic).next(len(copies))
    )
    assert checked.where(f"size({ERRORS}) > 0").count() == 0
    fields = [*(f.name for f in silver_schema(shop.order_contract).fields), "event_date"]
    parsed = silver_rows(checked, shop.order_contract).select(*fields)
    assertDataFrameEqual(
        parsed, orders.join(parsed.select("event_id"), "event_id", "left_semi").select(*fields)
    )


def assert_same(expected: DataFrame, path: str) -> None:
    table = read_delta(expected.sparkSession, path)
    assert table is not None
    assertDataFrameEqual(table, expected.select(*table.columns))


def test_table_growth_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.table_growth",
            "--sizes",
            ",".join(str(n) for n in SIZES),
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--large",
            "200,20",
            "--days",
            "3",
            "--warm-table",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows: built in" in done.stderr, "the progress display"

    latest = json.loads((out / "table-growth-latest.json").read_text())
    dated = list(out.glob("table-growth-2*.json"))
    assert len(dated) == 1 and json.loads(dated[0].read_text()) == latest
    assert latest["machine"]["cores"] and latest["machine"]["pyspark"]
    assert [s["rows"] for s in latest["sizes"]] == list(SIZES)
    for size in latest["sizes"]:
        rows = size["rows"]
        assert size["build_s"] > 0
        assert size["tables"]["silver.orders"]["files"] == 3, "one file per event date"
        for name, table in size["tables"].items():
            assert table["files"] >= 1 and table["bytes"] > 0, (rows, name)
        assert size["dedup_window_rows"] == rows - rows // 3  # 2 of 3 days: i % 3 in (0, 1)
        for writer in ("events", "cdc"):
            for batch, batch_rows in (("demo", (20, 2)), ("large", (200, 20))):
                figures = size["writers"][writer][batch]
                assert figures["batch_rows"] == batch_rows[writer == "cdc"]
                assert 0 < figures["median_s"] <= figures["max_s"], (rows, writer, batch)
                assert figures["spark_jobs"] > 0, (rows, writer, batch)
        checks = size["checks"]
        # One call of each batch: one copy of a table row in every 10 events.
        assert checks["order_copies_sent"] == (20 + 200) // 10
        assert checks["order_duplicates_found"] == checks["order_copies_sent"]
        assert checks["customer_ops"].get("u", 0) > 0
        assert checks["table_versions_closed"] > 0, "the MERGEs replaced versions the table held"
    assert {(g["writer"], g["batch"]) for g in latest["growth"]} == {
        (w, b) for w in ("events", "cdc") for b in ("demo", "large")
    }

    table = (out / "table-growth-latest.md").read_text()
    for rows in SIZES:
        assert f"| {rows:,} |" in table
    assert "| x10 rows: medians |" in table
