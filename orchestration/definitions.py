"""The Dagster code location `dagster dev` finds from the repository root."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.bronze.assets import bronze_tables, kafka_topics
from orchestration.defs.gold.assets import gold_assets
from orchestration.defs.maintenance.jobs import maintenance_job, maintenance_schedule
from orchestration.defs.micro_batch.jobs import micro_batch_job, micro_batch_schedule
from orchestration.defs.quality.checks import quality_checks, quality_job_and_cadence
from orchestration.defs.replay.jobs import replay_job
from orchestration.defs.resources import HeadwaterResource
from orchestration.defs.silver.assets import silver_assets
from orchestration.defs.streams import continuous_job, supervisor_sensor
from streaming.config import load_settings


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, not at import: conf is read then."""
    resource = HeadwaterResource()
    settings = load_settings(resource.conf_dir, resource.profile)
    quality_job, quality_cadence = quality_job_and_cadence(settings)
    return dg.Definitions(
        assets=[
            *kafka_topics(settings),
            bronze_tables(settings),
            *silver_assets(settings),
            *gold_assets(settings),
        ],
        asset_checks=quality_checks(settings),
        jobs=[
            micro_batch_job(settings),
            continuous_job(settings),
            replay_job(settings),
            maintenance_job(settings),
            quality_job,
        ],
        schedules=[
            micro_batch_schedule(settings),
            maintenance_schedule(settings),
        ],
        sensors=[supervisor_sensor(settings), quality_cadence],
        resources={"headwater": resource},
    )
