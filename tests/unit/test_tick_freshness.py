"""The supervisor's freshness check, tick by tick: a table that committed gets a result (so
the one the UI shows follows its newest materialization), a quiet table none until its
verdict changes, and a table turning stale raises one alert."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs.streams.freshness_checks import evaluate_freshness
from streaming.config import Settings, load_settings
from streaming.delta_log import Written

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings(REPO / "conf", "local", environ={})
NOW = 1_796_569_000.0
SLA_S = SETTINGS.pipeline.orchestration.freshness.sla_minutes("silver.orders") * 60


def wrote(landed: float, kafka: float | None) -> Written:
    return Written(
        version=3,
        commits=1,
        rows_added=10,
        rows_total=10,
        landed_ms=int(landed * 1000),
        rows_by_day={},
        newest=(
            {"kafka_timestamp": datetime.fromtimestamp(kafka, UTC).isoformat()} if kafka else {}
        ),
    )


def on(evaluations: list[dg.AssetCheckEvaluation], key: str) -> list[dg.AssetCheckEvaluation]:
    return [e for e in evaluations if e.asset_key == dg.AssetKey(key.split("."))]


def test_a_committing_table_gets_a_result_each_tick_and_a_stopped_one_fails_once() -> None:
    settings: Settings = SETTINGS
    first = evaluate_freshness(settings, {"silver.orders": wrote(NOW, NOW - 4)}, {}, NOW)
    [passed] = on(first.evaluations, "silver.orders")
    assert passed.passed and passed.check_name == "freshness"
    assert passed.metadata["newest_kafka_time"].value.startswith(
        datetime.fromtimestamp(NOW - 4, UTC).isoformat()[:19]
    )
    assert not first.turned_stale
    # Only tables that wrote something are judged: the others have nothing to show yet.
    assert {e.asset_key for e in first.evaluations} == {dg.AssetKey(["silver", "orders"])}

    # Quiet, still within the SLA: the result shown stands, nothing new is reported.
    quiet = evaluate_freshness(settings, {}, first.state, NOW + SLA_S / 2)
    assert quiet.evaluations == [] and not quiet.turned_stale

    # Past the SLA since the newest row's Kafka time: failed, and one alert.
    late = NOW - 4 + SLA_S + 1
    stale = evaluate_freshness(settings, {}, quiet.state, late)
    [failed] = on(stale.evaluations, "silver.orders")
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
    assert [f.table for f in stale.turned_stale] == ["silver.orders"]
    assert "breaches" in (failed.description or "")

    # Still stale: nothing repeated, no second alert.
    still = evaluate_freshness(settings, {}, stale.state, late + 60)
    assert still.evaluations == [] and not still.turned_stale

    # Writing again: passed again.
    back = evaluate_freshness(
        settings, {"silver.orders": wrote(late + 61, late + 60)}, still.state, late + 61
    )
    [again] = on(back.evaluations, "silver.orders")
    assert again.passed and not back.turned_stale


def test_without_kafka_times_the_last_commit_counts() -> None:
    found = evaluate_freshness(SETTINGS, {"gold.customer_orders": wrote(NOW, None)}, {}, NOW)
    [result] = on(found.evaluations, "gold.customer_orders")
    assert result.passed and "last commit" in (result.description or "")
    gold_sla_s = SETTINGS.pipeline.orchestration.freshness.sla_minutes("gold.customer_orders") * 60
    later = evaluate_freshness(SETTINGS, {}, found.state, NOW + gold_sla_s + 1)
    [stale] = on(later.evaluations, "gold.customer_orders")
    assert not stale.passed


def test_quarantine_has_no_freshness_check() -> None:
    found = evaluate_freshness(SETTINGS, {"quarantine.shop_orders": wrote(NOW, NOW)}, {}, NOW)
    assert found.evaluations == [] and "quarantine.shop_orders" not in found.state
