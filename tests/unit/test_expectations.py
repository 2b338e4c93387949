"""Expectations generated from the shop's contracts and conf, and their GX validation."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession

from streaming.config import Expectation, load_settings
from streaming.quality.expectations import (
    ExpectationSpec,
    conf_specs,
    latest_days,
    table_specs,
)
from tests.conftest import write_conf

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings(REPO / "conf", "local", environ={})


def test_silver_orders_gets_the_latest_contract_versions_rules() -> None:
    assert table_specs(SETTINGS, "silver.orders") == [
        ExpectationSpec("event_id.required", "event_id", "not_null"),
        ExpectationSpec("event_type.required", "event_type", "not_null"),
        ExpectationSpec(
            "event_type.enum",
            "event_type",
            "in_set",
            {"value_set": ("OrderPlaced", "OrderCancelled")},
        ),
        ExpectationSpec("event_time.required", "event_time", "not_null"),
        ExpectationSpec("schema_version.required", "schema_version", "not_null"),
        ExpectationSpec("order_id.required", "order_id", "not_null"),
        ExpectationSpec("customer_id.required", "customer_id", "not_null"),
        ExpectationSpec("amount.required", "amount", "not_null"),
        ExpectationSpec("amount.minimum", "amount", "between", {"min_value": 0.0}),
        ExpectationSpec("currency.required", "currency", "not_null"),
        ExpectationSpec(
            "currency.enum", "currency", "in_set", {"value_set": ("EUR", "USD", "GBP", "JPY")}
        ),
        ExpectationSpec("items.required", "items", "not_null"),
        ExpectationSpec("items.minimum", "items", "between", {"min_value": 1.0}),
        ExpectationSpec("event_id.unique", "event_id", "unique"),
    ]


def test_payments_method_is_in_its_enum() -> None:
    specs = {s.name: s for s in table_specs(SETTINGS, "silver.payments")}
    assert specs["method.enum"] == ExpectationSpec(
        "method.enum", "method", "in_set", {"value_set": ("card", "bank_transfer", "wallet")}
    )
    assert all(s.criticality == "error" for s in specs.values())
    assert len(specs) == 9 + 3 + 1 + 1  # 9 required, 3 enums, amount.minimum, the unique id


def test_cdc_current_state_gets_the_row_schemas_rules_and_a_unique_key() -> None:
    assert table_specs(SETTINGS, "silver.customers") == [
        ExpectationSpec("customer_id.required", "customer_id", "not_null"),
        ExpectationSpec("country.pattern", "country", "match_regex", {"regex": "^[A-Z]{2}$"}),
        ExpectationSpec(
            "segment.enum", "segment", "in_set", {"value_set": ("consumer", "business", "vip")}
        ),
        ExpectationSpec("updated_at.required", "updated_at", "not_null"),
        ExpectationSpec("customer_id.unique", "customer_id", "unique"),
    ]
    # The changes and history tables hold many rows per key: no contract expectations.
    assert table_specs(SETTINGS, "silver.customers_changes") == []
    assert table_specs(SETTINGS, "silver.customers_history") == []


def test_gold_tables_get_the_expectations_conf_lists() -> None:
    assert table_specs(SETTINGS, "gold.revenue_per_minute") == [
        ExpectationSpec("minute.not_null", "minute", "not_null"),
        ExpectationSpec("revenue.between", "revenue", "between", {"min_value": 0.0}),
        ExpectationSpec("orders_placed.between", "orders_placed", "between", {"min_value": 0.0}),
    ]
    assert table_specs(SETTINGS, "gold.customer_orders") == [
        ExpectationSpec("customer_id.not_null", "customer_id", "not_null"),
        ExpectationSpec("customer_id.unique", "customer_id", "unique"),
        ExpectationSpec("orders_placed.between", "orders_placed", "between", {"min_value": 1.0}),
    ]
    assert table_specs(SETTINGS, "bronze.shop_orders") == []


def test_criticality_comes_from_the_contract_map_then_the_field(tmp_path: Path) -> None:
    settings = write_conf(
        tmp_path,
        topics=["shop.orders"],
        pipeline={
            "orchestration": {
                "expectations": {
                    "silver.orders": [
                        {"expectation": "match_regex", "column": "order_id", "regex": "^o-"},
                        {"expectation": "between", "column": "items", "max": 50},
                        {
                            "expectation": "between",
                            "column": "items",
                            "min": 2,
                            "criticality": "warn",
                        },
                    ]
                }
            }
        },
    )
    contract = settings.conf_dir / "contracts" / "shop.orders.yaml"
    doc = yaml.safe_load(contract.read_text())
    doc["criticality"] = {"amount.minimum": "warn"}
    doc["versions"][2]["properties"]["currency"]["x-criticality"] = "warn"
    contract.write_text(yaml.safe_dump(doc))

    specs = {s.name: s for s in table_specs(settings, "silver.orders")}
    assert specs["amount.minimum"].criticality == "warn"
    assert specs["currency.enum"].criticality == "warn"
    assert specs["currency.required"].criticality == "warn"  # the field's level covers its rules
    assert specs["items.minimum"].criticality == "error"
    assert specs["order_id.match_regex"] == ExpectationSpec(
        "order_id.match_regex", "order_id", "match_regex", {"regex": "^o-"}
    )
    assert specs["items.between"] == ExpectationSpec(
        "items.between", "items", "between", {"max_value": 50.0}
    )
    assert specs["items.between#2"] == ExpectationSpec(
        "items.between#2", "items", "between", {"min_value": 2.0}, "warn"
    )


def test_conf_in_set_keeps_its_values() -> None:
    [spec] = conf_specs(
        [Expectation(expectation="in_set", column="currency", values=("EUR",), criticality="warn")]
    )
    assert spec == ExpectationSpec(
        "currency.in_set", "currency", "in_set", {"value_set": ("EUR",)}, "warn"
    )


def test_latest_days_keeps_the_two_newest_days_present(spark: SparkSession) -> None:
    frame = spark.createDataFrame(
        [(date(2026, 6, d), d) for d in (1, 1, 3, 7, 7, 7)], "event_date date, n int"
    )
    rows, days = latest_days(frame, "event_date")
    assert days == [date(2026, 6, 7), date(2026, 6, 3)]
    assert sorted(r.n for r in rows.collect()) == [3, 7, 7, 7]


def test_great_expectations_imports_in_a_process_without_a_main_file() -> None:
    """Dagster's run workers have a __main__ without a file; pyspark.sql.connect, which GX
    imports, takes such a process for its own doctests and exits it (status 0, nothing said)
    unless Spark Connect's packages are installed (pyspark[connect]): every quality step then
    failed with SystemExit."""
    done = subprocess.run(
        [sys.executable, "-c", "import great_expectations; print('gx imported')"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gx imported" in done.stdout, f"the process exited during the import: {done.stderr}"
