"""The Dagster job `maintain_tables`, run in process with the repo's resource: it compacts
every table of conf and keeps its rows, VACUUM deletes what a table no longer references once
the retention has passed, each table's result shows in the run, a failing table does not stop
the others; its schedule runs on the cron of conf, and a bad conf stops the code location."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from pyspark.sql import SparkSession

from orchestration.defs.maintenance.jobs import (
    JOB,
    OP,
    maintenance_job,
    maintenance_schedule,
)
from orchestration.defs.resources import HeadwaterResource
from streaming.config import Settings, load_settings
from streaming.delta_log import live_files, local_path
from streaming.errors import ConfigError
from tests.conftest import write_conf
from tests.helpers import small_rows, write_small_files

REPO = Path(__file__).resolve().parents[2]


def data_files(path: str) -> dict[str, int]:
    """The table's data files on disk, referenced or not, with their sizes."""
    root = local_path(path)
    return {
        str(f.relative_to(root)): f.stat().st_size
        for f in root.rglob("*.parquet")
        if "_delta_log" not in f.parts
    }


def run_job(
    settings: Settings, tables: Sequence[str] = ()
) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    """The job run in process, and the instance whose event log holds what it recorded."""
    instance = dg.DagsterInstance.ephemeral()
    result = maintenance_job(settings).execute_in_process(
        run_config={"ops": {OP: {"config": {"tables": list(tables)}}}},
        resources={
            "headwater": HeadwaterResource(conf_dir=str(settings.conf_dir), profile="local")
        },
        instance=instance,
        raise_on_error=False,
    )
    return result, instance


def observed(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> dict[str, Any]:
    """Each table's observation metadata in the run's event log (as the UI shows it), by
    qualified name, as plain values."""
    found: dict[str, Any] = {}
    for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION):
        assert entry.asset_observation is not None
        observation = entry.asset_observation
        found[".".join(observation.asset_key.path)] = {
            k: v.value for k, v in observation.metadata.items()
        }
    return found


@pytest.fixture
def orders(tmp_path: Path, unique: str) -> Settings:
    """A pipeline of one event topic: bronze, silver.orders, quarantine and duplicates."""
    return write_conf(tmp_path, topics=[f"t{unique}.orders"])


@pytest.mark.integration
def test_the_job_compacts_every_table_and_keeps_its_rows(
    spark: SparkSession, orders: Settings
) -> None:
    bronze = f"bronze.{orders.pipeline.sources[0].table_name}"
    written = {
        bronze: write_small_files(spark, orders.table_path_by_name(bronze), 12),
        "silver.orders": write_small_files(spark, orders.table_path_by_name("silver.orders"), 8),
    }
    before = {name: live_files(orders.table_path_by_name(name)) for name in written}
    on_disk = {name: data_files(orders.table_path_by_name(name)) for name in written}
    assert before == {bronze: 12, "silver.orders": 8}
    result, instance = run_job(orders)

    assert result.success
    found = observed(result, instance)
    assert set(found) == {t for t in written} | {
        f"quarantine.{orders.pipeline.sources[0].table_name}",
        f"duplicates.{orders.pipeline.sources[0].table_name}",
    }
    for name, rows in written.items():
        path = orders.table_path_by_name(name)
        meta = found[name]
        assert live_files(path) == 1, "one small table: one file"
        assert (meta["files_before"], meta["files_after"]) == (before[name], 1)
        assert (meta["files_compacted"], meta["files_written"]) == (before[name], 1)
        # Replaced files stay a week (Delta's default, which conf keeps): nothing deleted yet.
        assert meta["files_vacuumed"] == 0 and set(on_disk[name]) < set(data_files(path))
        assert (meta["file_retention"], meta["log_retention"]) == (
            "interval 1 week",
            "interval 30 days",
        )
        assert small_rows(spark, path) == sorted(rows), "the same rows, value for value"
    for name in set(found) - set(written):
        assert found[name]["skipped"] == "it does not exist yet"
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    for name in written:
        assert any(m.startswith(f"{name}: {before[name]} -> 1 files") for m in logged), name


@pytest.mark.integration
def test_vacuum_deletes_unreferenced_files_once_the_retention_has_passed(
    spark: SparkSession, tmp_path: Path, unique: str
) -> None:
    settings = write_conf(
        tmp_path,
        topics=[f"t{unique}.orders"],
        pipeline={"maintenance": {"vacuum_retention_hours": 0, "allow_short_retention": True}},
    )
    bronze = f"bronze.{settings.pipeline.sources[0].table_name}"
    path = settings.table_path_by_name(bronze)
    rows = write_small_files(spark, path, 6)
    small = data_files(path)
    assert len(small) == 6

    result, instance = run_job(settings, tables=[bronze])

    assert result.success
    meta = observed(result, instance)[bronze]
    # OPTIMIZE stopped referencing the six small files; with no retention, VACUUM deletes
    # them at once and leaves only the file that holds the rows now.
    assert (meta["files_compacted"], meta["files_after"]) == (6, 1)
    assert meta["files_vacuumed"] == 6 and meta["bytes_vacuumed"] == sum(small.values())
    left = data_files(path)
    assert len(left) == 1 and not set(left) & set(small)
    assert meta["file_retention"] == "interval 0 hours"
    from delta.tables import DeltaTable

    detail = DeltaTable.forPath(spark, path).detail().first()
    assert detail is not None
    assert detail.properties["delta.deletedFileRetentionDuration"] == "interval 0 hours"
    assert small_rows(spark, path) == sorted(rows)


@pytest.mark.integration
def test_a_table_that_fails_does_not_keep_the_others_unmaintained(
    spark: SparkSession, orders: Settings
) -> None:
    bronze = f"bronze.{orders.pipeline.sources[0].table_name}"
    write_small_files(spark, orders.table_path_by_name(bronze), 3)
    broken = orders.table_path_by_name("silver.orders")
    write_small_files(spark, broken, 2)
    lost = sorted(data_files(broken))[0]
    (local_path(broken) / lost).unlink()  # a file the log still references: OPTIMIZE fails

    result, instance = run_job(orders, tables=["silver.orders", bronze])

    assert not result.success
    assert observed(result, instance)[bronze]["files_after"] == 1, "maintained all the same"
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.error is not None
    assert "maintenance failed for 1 of 2 tables: silver.orders" in str(
        failure.step_failure_data.error.message
    )


@pytest.mark.unit
def test_the_schedule_runs_the_job_on_the_cron_of_conf(tmp_path: Path) -> None:
    for enabled, status in ((True, "RUNNING"), (False, "STOPPED")):
        settings = write_conf(
            tmp_path / status,
            topics=["shop.orders"],
            pipeline={"maintenance": {"cron": "15 3 * * 1-5", "enabled": enabled}},
        )
        schedule = maintenance_schedule(settings)
        assert schedule.cron_schedule == "15 3 * * 1-5"
        assert schedule.job_name == JOB and schedule.execution_timezone == "UTC"
        assert schedule.default_status == dg.DefaultScheduleStatus[status]


@pytest.mark.unit
def test_the_code_location_has_the_job_and_its_schedule() -> None:
    from orchestration.definitions import defs

    definitions = defs()
    conf = load_settings(REPO / "conf", "local", environ={}).pipeline.maintenance
    assert definitions.resolve_job_def(JOB).name == JOB
    schedule = definitions.resolve_schedule_def(f"{JOB}_schedule")
    assert schedule.job_name == JOB
    assert schedule.cron_schedule == conf.cron == "0 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.unit
@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (
            {"tables": {"silver.ordrs": {"optimize": False}}},
            "field 'maintenance.tables' names silver.ordrs, which the pipeline has no table of",
        ),
        ({"cron": "every hour"}, "field 'maintenance.cron': write a cron expression"),
    ],
)
def test_a_bad_maintenance_conf_stops_the_code_location_from_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: dict[str, Any], problem: str
) -> None:
    from orchestration.definitions import defs

    good = write_conf(tmp_path, topics=["shop.orders"])
    pipeline = good.conf_dir / "pipeline.yaml"
    doc = yaml.safe_load(pipeline.read_text())
    pipeline.write_text(yaml.safe_dump({**doc, "maintenance": block}))
    monkeypatch.setenv("HEADWATER_CONF", str(good.conf_dir))
    monkeypatch.setenv("HEADWATER_PROFILE", "local")
    with pytest.raises(ConfigError) as caught:
        defs()
    assert problem in str(caught.value) and str(pipeline) in str(caught.value)
