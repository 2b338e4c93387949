"""The `maintenance` block of conf/pipeline.yaml: defaults, overrides per table, and bad
settings that stop at load with a sentence saying what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster._utils.schedules import is_valid_cron_string

from streaming.config import TableMaintenance, load_settings
from streaming.errors import ConfigError
from streaming.maintenance import maintained_tables, retention_properties, same_duration
from tests.conftest import write_conf

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def maintenance_conf(root: Path, block: dict[str, Any]) -> Any:
    return write_conf(root, topics=["shop.orders"], pipeline={"maintenance": block})


def conf_error(root: Path, block: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        maintenance_conf(root, block)
    return str(caught.value)


def test_repository_conf_maintains_every_table_hourly_with_deltas_safe_defaults() -> None:
    conf = load_settings(REPO / "conf", "local", environ={}).pipeline.maintenance
    assert conf.enabled and conf.cron == "0 * * * *"
    assert conf.for_table("silver.orders") == TableMaintenance(
        enabled=True,
        optimize=True,
        allow_short_retention=False,
        vacuum_retention_hours=168,
        log_retention="30 days",
    )
    assert retention_properties(conf.for_table("silver.orders")) == {
        "delta.deletedFileRetentionDuration": "interval 168 hours",
        "delta.logRetentionDuration": "interval 30 days",
    }


def test_an_override_replaces_only_the_fields_it_gives(tmp_path: Path) -> None:
    conf = maintenance_conf(
        tmp_path,
        {
            "optimize": False,
            "log_retention": "interval  2 Weeks",
            "tables": {
                "silver.orders": {"vacuum_retention_hours": 336},
                "quarantine.shop_orders": {"enabled": False, "optimize": True},
            },
        },
    ).pipeline.maintenance
    orders = conf.for_table("silver.orders")
    assert (orders.optimize, orders.vacuum_retention_hours) == (False, 336)
    assert orders.log_retention == "2 weeks"
    assert retention_properties(orders)["delta.logRetentionDuration"] == "interval 2 weeks"
    quarantine = conf.for_table("quarantine.shop_orders")
    assert (quarantine.enabled, quarantine.optimize, quarantine.vacuum_retention_hours) == (
        False,
        True,
        168,
    )
    assert conf.for_table("bronze.shop_orders").optimize is False


def test_a_short_vacuum_retention_needs_to_be_asked_for(tmp_path: Path) -> None:
    message = conf_error(tmp_path / "a", {"vacuum_retention_hours": 24})
    assert "pipeline.yaml" in message and "'maintenance.vacuum_retention_hours'" in message
    assert "below Delta's safe minimum of 168 hours" in message
    assert "raise it to 168 or more, or set allow_short_retention: true" in message

    allowed = maintenance_conf(
        tmp_path / "b", {"vacuum_retention_hours": 0, "allow_short_retention": True}
    ).pipeline.maintenance
    assert allowed.for_table("silver.orders").vacuum_retention_hours == 0

    message = conf_error(
        tmp_path / "c", {"tables": {"silver.orders": {"vacuum_retention_hours": 1}}}
    )
    assert (
        "'maintenance.tables'" in message
        and "silver.orders: a vacuum retention of 1 hours" in message
    )

    # Allowed for the table, or for every table: either way it was asked for.
    for block in (
        {"tables": {"silver.orders": {"vacuum_retention_hours": 1, "allow_short_retention": True}}},
        {"allow_short_retention": True, "tables": {"silver.orders": {"vacuum_retention_hours": 1}}},
    ):
        conf = maintenance_conf(tmp_path / "d", block).pipeline.maintenance
        assert conf.for_table("silver.orders").vacuum_retention_hours == 1
        assert conf.for_table("bronze.shop_orders").vacuum_retention_hours == 168


@pytest.mark.parametrize(
    "cron",
    ["0 * * *", "61 * * * *", "0 24 * * *", "*/0 * * * *", "0 0 0 * *", "1-2-3 * * * *", "hourly"],
)
def test_a_bad_cron_stops_at_load(tmp_path: Path, cron: str) -> None:
    message = conf_error(tmp_path, {"cron": cron})
    assert "'maintenance.cron'" in message and "five fields" in message and repr(cron) in message
    assert not is_valid_cron_string(cron), "Dagster would refuse it too"


@pytest.mark.parametrize(
    "cron", ["0 * * * *", "*/15 2-4 * * *", "30 2 1,15 * *", "0 0 * jan-mar mon-fri", "0 0 * * 7"]
)
def test_cron_expressions_dagster_takes_load(tmp_path: Path, cron: str) -> None:
    assert is_valid_cron_string(cron)
    assert maintenance_conf(tmp_path, {"cron": cron}).pipeline.maintenance.cron == cron


@pytest.mark.parametrize("retention", ["30", "forever", "30 days 2 hours"])
def test_a_log_retention_that_is_no_duration_stops_at_load(tmp_path: Path, retention: str) -> None:
    message = conf_error(tmp_path, {"tables": {"silver.orders": {"log_retention": retention}}})
    assert "'maintenance.tables.silver.orders.log_retention'" in message
    assert "write a duration like '30 days'" in message


def test_the_log_is_kept_at_least_as_long_as_removed_files(tmp_path: Path) -> None:
    message = conf_error(tmp_path / "a", {"log_retention": "3 days"})
    assert "'maintenance.log_retention'" in message
    assert "log_retention 3 days is shorter than vacuum_retention_hours 168" in message
    assert "raise log_retention to 168 hours or more" in message

    message = conf_error(
        tmp_path / "b", {"tables": {"gold.revenue_per_minute": {"vacuum_retention_hours": 1000}}}
    )
    assert "gold.revenue_per_minute: log_retention 30 days is shorter than" in message

    short = maintenance_conf(
        tmp_path / "c",
        {"vacuum_retention_hours": 0, "allow_short_retention": True, "log_retention": "1 day"},
    ).pipeline.maintenance
    assert retention_properties(short.for_table("silver.orders")) == {
        "delta.deletedFileRetentionDuration": "interval 0 hours",
        "delta.logRetentionDuration": "interval 1 day",
    }


def test_overrides_must_name_tables_of_the_pipeline(tmp_path: Path) -> None:
    message = conf_error(tmp_path / "a", {"tables": {"orders": {"optimize": False}}})
    assert "write table 'orders' as <layer>.<table>" in message

    settings = maintenance_conf(tmp_path / "b", {"tables": {"silver.ordrs": {"optimize": False}}})
    with pytest.raises(ConfigError) as caught:
        maintained_tables(settings)
    message = str(caught.value)
    assert str(settings.conf_dir / "pipeline.yaml") in message
    assert "'maintenance.tables' names silver.ordrs" in message
    assert "silver.orders" in message and "bronze.shop_orders" in message, "the known tables"

    with pytest.raises(ConfigError, match=r"no table gold\.nope in the pipeline"):
        maintained_tables(maintenance_conf(tmp_path / "c", {}), ["gold.nope"])


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    message = conf_error(tmp_path, {"vacuum_hours": 200})
    assert "field 'maintenance.vacuum_hours' is not a known setting" in message


def test_retention_values_compare_as_durations() -> None:
    assert same_duration("interval 30 days", "interval 720 hours")
    assert same_duration("interval 1 week", "interval 168 hours"), "Delta's default, and conf's"
    assert same_duration("interval 2 weeks", "INTERVAL 14 days")
    assert not same_duration("interval 30 days", "interval 7 days")
    assert not same_duration("interval 4 weeks 2 days", "interval 30 days"), (
        "a form conf never uses"
    )
