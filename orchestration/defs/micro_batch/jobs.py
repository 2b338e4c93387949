"""The orchestrated micro-batch mode: a job catches every table up with `availableNow`
streams (bronze, then silver, then gold, checks in between) and exits; a schedule runs it.

Its runs target today's day partition. Every stream takes its lock first, so a run that
meets the continuous pipeline fails at once with the holder's name instead of writing a
checkpoint another process writes; the schedule skips its tick in that case.
"""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from orchestration.defs.keys import table_key
from orchestration.defs.partitions import today
from streaming.catalog import pipeline_tables
from streaming.config import Settings
from streaming.locks import holder

JOB = "headwater_micro_batch"
MODE_TAG = "headwater/mode"


def micro_batch_job(settings: Settings) -> UnresolvedAssetJobDefinition:
    """All tables of conf, caught up layer by layer in one process (one SparkSession)."""
    return dg.define_asset_job(
        JOB,
        selection=dg.AssetSelection.assets(*[table_key(t) for t in pipeline_tables(settings)]),
        executor_def=dg.in_process_executor,
        tags={MODE_TAG: "micro_batch"},
        description="Catch every table up with availableNow streams (bronze -> silver -> gold, "
        "checks in between), then exit.",
    )


def busy_streams(settings: Settings) -> list[str]:
    """Holders of the streams' locks, described ('' list when every stream is free)."""
    streams = dict.fromkeys(t.stream for t in pipeline_tables(settings))
    return [f"{s}: {h.describe()}" for s in streams if (h := holder(settings, s)) is not None]


def micro_batch_schedule(settings: Settings) -> dg.ScheduleDefinition:
    conf = settings.pipeline.orchestration
    status = (
        dg.DefaultScheduleStatus.RUNNING
        if conf.default_mode == "micro_batch"
        else dg.DefaultScheduleStatus.STOPPED
    )

    @dg.schedule(
        name=f"{JOB}_schedule",
        cron_schedule=conf.micro_batch_cron,
        job_name=JOB,
        execution_timezone="UTC",
        default_status=status,
        description="Runs the micro-batch job for today's partition (cron from conf).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        busy = busy_streams(settings)
        if busy:
            return dg.SkipReason(
                "streams are running elsewhere, so this tick does not start them: "
                + "; ".join(busy)
            )
        return dg.RunRequest(partition_key=today(), tags={MODE_TAG: "micro_batch"})

    return _schedule
