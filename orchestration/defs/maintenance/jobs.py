"""Table maintenance from Dagster: the job `maintain_tables` compacts (OPTIMIZE) and cleans
(VACUUM, expired log entries) each table of the catalog as conf's `maintenance` block says; a
schedule runs it on that block's cron.

Each table's result is an AssetObservation of its asset (files before and after, what VACUUM
deleted) and a line in the run's log. A table whose maintenance fails does not stop the others;
the run fails at the end, naming it. Locks (streaming.maintenance) keep two runs off one table.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from orchestration.defs.keys import key_of
from orchestration.defs.resources import HeadwaterResource
from streaming.config import Settings
from streaming.locks import MAINTENANCE_OWNER
from streaming.maintenance import MaintenanceResult, maintain_table, maintained_tables

JOB = "maintain_tables"
OP = "maintain_each_table"


class MaintenanceConfig(dg.Config):  # type: ignore[misc]
    """Which tables to maintain."""

    tables: list[str] = Field(
        default_factory=list,
        description="qualified table names, e.g. silver.orders; empty: every table of the pipeline",
    )


def maintenance_metadata(result: MaintenanceResult) -> dict[str, Any]:
    """What maintenance did to a table, as Dagster metadata."""
    if result.skipped is not None:
        return {
            "skipped": dg.MetadataValue.text(result.skipped),
            "path": dg.MetadataValue.path(result.path),
        }
    metadata: dict[str, Any] = {
        "files_before": dg.MetadataValue.int(result.files_before),
        "files_after": dg.MetadataValue.int(result.files_after),
        "files_compacted": dg.MetadataValue.int(result.files_compacted),
        "files_written": dg.MetadataValue.int(result.files_written),
        "file_retention": dg.MetadataValue.text(result.file_retention or ""),
        "log_retention": dg.MetadataValue.text(result.log_retention or ""),
        "duration_seconds": dg.MetadataValue.float(result.duration_seconds),
        "path": dg.MetadataValue.path(result.path),
    }
    if result.files_vacuumed is not None:
        metadata["files_vacuumed"] = dg.MetadataValue.int(result.files_vacuumed)
    if result.bytes_vacuumed is not None:
        metadata["bytes_vacuumed"] = dg.MetadataValue.int(result.bytes_vacuumed)
    if result.notes:
        metadata["notes"] = dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes))
    return metadata


def maintenance_job(settings: Settings) -> dg.JobDefinition:
    """The job `maintain_tables`: one op that maintains the tables one after another (one
    SparkSession). Raises ConfigError at load when conf's overrides name an unknown table."""
    count = len(maintained_tables(settings))

    @dg.op(name=OP)
    def _maintain(
        context: dg.OpExecutionContext, config: MaintenanceConfig, headwater: HeadwaterResource
    ) -> None:
        """OPTIMIZE, VACUUM and retention of each table, as conf's maintenance block says."""
        current = headwater.settings()
        tables = maintained_tables(current, config.tables)
        spark = headwater.spark()
        failed: dict[str, str] = {}
        for table in tables:
            try:
                result = maintain_table(
                    spark,
                    current,
                    table.qualified,
                    owner=f"{MAINTENANCE_OWNER} (dagster run {context.run_id})",
                )
            except Exception as exc:  # one table's failure must not keep the others unmaintained
                failed[table.qualified] = (str(exc).strip().splitlines() or [repr(exc)])[0]
                context.log.exception(f"{table.qualified}: maintenance failed")
                continue
            context.log.info(result.summary())
            context.log_event(
                dg.AssetObservation(
                    asset_key=key_of(table.qualified),
                    description="table maintenance (OPTIMIZE, VACUUM, retention)",
                    metadata=maintenance_metadata(result),
                )
            )
        if failed:
            raise dg.Failure(
                description=f"maintenance failed for {len(failed)} of {len(tables)} tables: "
                + ", ".join(failed),
                metadata={name: dg.MetadataValue.text(error) for name, error in failed.items()},
            )

    @dg.job(
        name=JOB,
        executor_def=dg.in_process_executor,
        description=f"Compact (OPTIMIZE) and clean (VACUUM, expired log entries) the {count} "
        "lake tables, as the maintenance block of conf/pipeline.yaml says.",
    )
    def _job() -> None:
        _maintain()

    return _job


def maintenance_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """`maintain_tables` on conf's maintenance cron (UTC); off by default when conf says
    enabled: false."""
    conf = settings.pipeline.maintenance
    return dg.ScheduleDefinition(
        name=f"{JOB}_schedule",
        cron_schedule=conf.cron,
        job_name=JOB,
        execution_timezone="UTC",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if conf.enabled else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"Maintains every lake table on cron '{conf.cron}' (UTC, from conf).",
    )
