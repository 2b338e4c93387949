"""Quality checks as Dagster asset checks over real Delta tables: expectations (GX),
reconciliation, freshness, and the alert a failed check sends."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from orchestration.defs.keys import key_of, table_key
from orchestration.defs.quality.checks import (
    EXPECTATIONS_ERROR,
    EXPECTATIONS_WARN,
    FRESHNESS,
    QUALITY_JOB,
    RECONCILIATION,
    due_check_run,
    quality_checks,
    quality_job_and_cadence,
)
from orchestration.defs.resources import HeadwaterResource
from streaming.bronze import BRONZE_SCHEMA, PARTITION_COLUMN
from streaming.catalog import pipeline_tables
from streaming.config import Settings, load_settings
from streaming.quality.freshness import Freshness
from streaming.runner import run_streams
from streaming.tables import ensure_delta_table, read_table
from tests.conftest import write_conf
from tests.helpers import produce_shop

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_ENV = "HEADWATER_ALERT_WEBHOOK"


def definitions(settings: Settings) -> dg.Definitions:
    """The checks and the quality job over plain asset specs of every table (the lead's
    silver and gold assets are not needed to run checks)."""
    job, cadence = quality_job_and_cadence(settings)
    return dg.Definitions(
        assets=[dg.AssetSpec(table_key(t)) for t in pipeline_tables(settings)],
        asset_checks=quality_checks(settings),
        jobs=[job],
        sensors=[cadence],
        resources={
            "headwater": HeadwaterResource(conf_dir=str(settings.conf_dir), profile="local")
        },
    )


def run_checks(
    settings: Settings, checks: list[dg.AssetCheckKey] | None = None
) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """Run the quality job (or only `checks`); evaluations by (qualified table, check).

    A blocking check that fails with ERROR fails its step (Dagster's rule), so the run is
    not required to succeed; every selected check must still report."""
    defs = definitions(settings)
    if checks is None:
        job = defs.resolve_job_def(QUALITY_JOB)
    else:
        subset = dg.define_asset_job(
            "some_checks",
            selection=dg.AssetSelection.checks(*checks),
            executor_def=dg.in_process_executor,
        )
        job = dg.Definitions.merge(defs, dg.Definitions(jobs=[subset])).resolve_job_def(
            "some_checks"
        )
    result = job.execute_in_process(raise_on_error=False)
    found = {
        (".".join(e.asset_key.path), e.check_name): e for e in result.get_asset_check_evaluations()
    }
    blocked = any(
        not e.passed and e.blocking and e.severity == dg.AssetCheckSeverity.ERROR
        for e in found.values()
    )
    assert result.success != blocked, "a run fails exactly when a blocking check failed"
    return found


def check(qualified: str, name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(key_of(qualified), name)


def meta(evaluation: dg.AssetCheckEvaluation, name: str) -> Any:
    return evaluation.metadata[name].value


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A webhook on 127.0.0.1 whose URL is in conf's webhook variable; yields the payloads
    it received."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/alerts")
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def with_quality_conf(settings: Settings) -> Settings:
    """The test's conf plus the repo's gold table revenue_per_minute, its expectations, a
    warn-level expectation on silver.orders and SLAs long enough for a slow machine."""
    conf = settings.conf_dir
    (conf / "gold").mkdir(exist_ok=True)
    shutil.copy(REPO / "conf" / "gold" / "revenue_per_minute.yaml", conf / "gold")
    doc = yaml.safe_load((conf / "pipeline.yaml").read_text())
    repo = yaml.safe_load((REPO / "conf" / "pipeline.yaml").read_text())
    doc["orchestration"] = {
        "freshness": {"default_minutes": 120},
        "expectations": {
            "gold.revenue_per_minute": repo["orchestration"]["expectations"][
                "gold.revenue_per_minute"
            ],
            "silver.orders": [
                {
                    "expectation": "match_regex",
                    "column": "order_id",
                    "regex": ".",
                    "criticality": "warn",
                }
            ],
        },
    }
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    return load_settings(conf, "local", environ={})


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_checks_pass_on_clean_data_then_catch_a_lost_row_and_bad_values(
    spark: SparkSession, pipeline: Settings, webhook: list[dict[str, Any]]
) -> None:
    settings = with_quality_conf(pipeline)
    produce_shop(settings, 120, seed=5)
    run_streams(spark, settings, available_now=True)
    orders_path = settings.table_path("silver", "orders")

    # Clean streamed data: every check of the quality job passes, and nothing is alerted.
    clean = run_checks(settings)
    expected = {
        *((f"bronze.{s.table_name}", FRESHNESS) for s in settings.pipeline.sources),
        *((f"silver.{t}", c) for t in ("orders", "payments") for c in (FRESHNESS, RECONCILIATION)),
        *((f"silver.{t}", EXPECTATIONS_ERROR) for t in ("orders", "payments")),
        ("silver.orders", EXPECTATIONS_WARN),
        *(("gold.revenue_per_minute", c) for c in (FRESHNESS, RECONCILIATION, EXPECTATIONS_ERROR)),
    }
    assert set(clean) == expected
    assert [k for k, e in clean.items() if not e.passed] == []
    assert webhook == []
    silver = read_table(spark, settings, "silver.orders")
    assert silver is not None
    orders = silver.count()
    days = sorted({str(r.event_date) for r in silver.select("event_date").distinct().collect()})
    orders_check = clean[("silver.orders", EXPECTATIONS_ERROR)]
    assert meta(orders_check, "rows_checked") == orders  # the demo's events span < 2 days
    assert sorted(meta(orders_check, "days_checked").split(", ")) == days
    assert meta(clean[("silver.orders", RECONCILIATION)], "unaccounted") == 0

    # A silver row lost: bronze no longer equals silver + quarantine + duplicates.
    lost = silver.select("event_id").first()
    assert lost is not None
    DeltaTable.forPath(spark, orders_path).delete(F.col("event_id") == lost.event_id)
    recon = run_checks(settings, [check("silver.orders", RECONCILIATION)])
    [(key, evaluation)] = recon.items()
    assert key == ("silver.orders", RECONCILIATION) and not evaluation.passed
    assert meta(evaluation, "unaccounted") == 1
    assert meta(evaluation, "silver") == orders - 1
    assert webhook[-1]["details"]["check"] == RECONCILIATION

    # Bad values written straight into silver: the blocking error check fails with them.
    latest = read_table(spark, settings, "silver.orders")
    assert latest is not None
    bad = (
        latest.orderBy(F.desc("event_date"))
        .limit(3)
        .withColumn("event_id", F.expr("uuid()"))
        .withColumn("currency", F.lit("XXX"))
        .withColumn("amount", F.lit(-5).cast("decimal(12,2)"))
        .withColumn("order_id", F.lit(""))
    )
    bad.write.format("delta").mode("append").save(orders_path)
    failed = run_checks(
        settings,
        [check("silver.orders", EXPECTATIONS_ERROR), check("silver.orders", EXPECTATIONS_WARN)],
    )
    errors = failed[("silver.orders", EXPECTATIONS_ERROR)]
    assert not errors.passed and errors.severity == dg.AssetCheckSeverity.ERROR and errors.blocking
    unexpected = meta(errors, "unexpected")
    assert set(unexpected) == {"currency.enum", "amount.minimum"}
    assert unexpected["currency.enum"]["unexpected_count"] == 3
    assert unexpected["currency.enum"]["sample"] == ["XXX", "XXX", "XXX"]
    assert [float(v) for v in unexpected["amount.minimum"]["sample"]] == [-5.0, -5.0, -5.0]
    assert meta(errors, "rows_checked") == orders - 1 + 3
    warnings = failed[("silver.orders", EXPECTATIONS_WARN)]
    assert not warnings.passed and warnings.severity == dg.AssetCheckSeverity.WARN
    assert meta(warnings, "unexpected")["order_id.match_regex"]["unexpected_count"] == 3

    # Each failed check reached the webhook, with the bad values.
    alerted = {(a["details"]["table"], a["details"]["check"]): a for a in webhook}
    assert set(alerted) == {
        ("silver.orders", RECONCILIATION),
        ("silver.orders", EXPECTATIONS_ERROR),
        ("silver.orders", EXPECTATIONS_WARN),
    }
    payload = alerted[("silver.orders", EXPECTATIONS_ERROR)]
    assert payload["source"] == "headwater" and "expectations_error" in payload["summary"]
    assert payload["details"]["metadata"]["unexpected"]["currency.enum"]["sample"] == ["XXX"] * 3


@pytest.mark.integration
def test_freshness_fails_past_the_sla_and_for_a_missing_table(
    spark: SparkSession, tmp_path: Path
) -> None:
    settings = write_conf(
        tmp_path,
        topics=[f"t{uuid.uuid4().hex[:8]}.orders"],
        pipeline={"orchestration": {"freshness": {"layers": {"bronze": 0.0001}}}},
    )
    source = settings.pipeline.sources[0]
    before = datetime.now(UTC)
    ensure_delta_table(
        spark, settings.table_path("bronze", source.table_name), BRONZE_SCHEMA, PARTITION_COLUMN
    )
    bronze, silver = f"bronze.{source.table_name}", "silver.orders"
    found = run_checks(settings, [check(bronze, FRESHNESS), check(silver, FRESHNESS)])

    stale = found[(bronze, FRESHNESS)]
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert meta(stale, "sla_minutes") == pytest.approx(0.0001)
    committed = datetime.fromisoformat(meta(stale, "last_commit"))
    assert before - timedelta(seconds=5) <= committed <= datetime.now(UTC)
    assert meta(stale, "minutes_stale") > 0.0001
    missing = found[(silver, FRESHNESS)]
    assert not missing.passed and meta(missing, "table_exists") is False
    assert meta(missing, "sla_minutes") == 15  # the default: this conf has no silver SLA
    assert "does not exist yet" in (missing.description or "")


@pytest.mark.unit
def test_freshness_against_the_sla_at_a_given_time() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    fresh = Freshness("silver.orders", now - timedelta(minutes=4), 5.0, now)
    stale = Freshness("silver.orders", now - timedelta(minutes=20), 15.0, now)
    assert fresh.ok and fresh.minutes_stale == pytest.approx(4.0)
    assert not stale.ok and stale.minutes_stale == pytest.approx(20.0)
    assert stale.describe() == "silver.orders: last commit 20.0 min ago, breaches its SLA of 15 min"
    recent = Freshness("bronze.orders", now - timedelta(seconds=12), 0.1, now)
    assert recent.describe() == "bronze.orders: last commit 12.0 s ago, breaches its SLA of 0.1 min"
    assert not Freshness("silver.orders", None, 5.0, now).ok
    # A recent commit of old data: the newest row's Kafka time is what counts.
    old_rows = Freshness(
        "silver.orders", now - timedelta(seconds=5), 5.0, now, now - timedelta(minutes=9)
    )
    assert not old_rows.ok and old_rows.minutes_stale == pytest.approx(9.0)
    assert old_rows.describe() == (
        "silver.orders: newest row (Kafka time) 9.0 min ago, breaches its SLA of 5 min"
    )


@pytest.mark.unit
def test_quality_job_covers_every_check_and_has_a_stopped_schedule() -> None:
    settings = load_settings(REPO / "conf", "local", environ={})
    checks = quality_checks(settings)
    keys = {k for c in checks for k in c.check_keys}
    tables = {t.qualified: t for t in pipeline_tables(settings)}
    for qualified, table in tables.items():
        fresh = check(qualified, FRESHNESS) in keys
        assert fresh == (table.layer in ("bronze", "silver", "gold")), qualified
    reconciled = {".".join(k.asset_key.path) for k in keys if k.name == RECONCILIATION}
    assert reconciled == {
        "silver.orders",
        "silver.payments",
        "silver.customers_changes",
        "gold.customer_orders",
        "gold.revenue_per_minute",
    }
    blocking = {
        ".".join(spec.asset_key.path)
        for c in checks
        for spec in c.check_specs
        if spec.name == EXPECTATIONS_ERROR and spec.blocking
    }
    assert blocking == {
        "silver.orders",
        "silver.payments",
        "silver.customers",
        "gold.customer_orders",
        "gold.revenue_per_minute",
    }
    defs = definitions(settings)
    job = defs.resolve_job_def(QUALITY_JOB)
    assert job.asset_layer.asset_graph.asset_check_keys == keys
    cadence = quality_job_and_cadence(settings)[1]
    assert cadence.default_status == dg.DefaultSensorStatus.RUNNING  # in both modes


def test_the_checks_run_at_the_first_tick_then_every_interval_of_conf(tmp_path: Path) -> None:
    every_s = 600.0
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        first = due_check_run(instance, every_s, time.time())
        assert isinstance(first, dg.RunRequest)
        run = instance.create_run_for_job(dg.GraphDefinition("stand_in").to_job(name=QUALITY_JOB))
        going = due_check_run(instance, every_s, time.time())
        assert isinstance(going, dg.SkipReason) and "still going" in str(going.skip_message)
        instance.report_run_failed(run)
        began = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()  # type: ignore[union-attr]
        soon = due_check_run(instance, every_s, began + every_s - 1)
        assert isinstance(soon, dg.SkipReason) and "next is due" in str(soon.skip_message)
        due = due_check_run(instance, every_s, began + every_s)
        assert isinstance(due, dg.RunRequest) and due.run_key != first.run_key
