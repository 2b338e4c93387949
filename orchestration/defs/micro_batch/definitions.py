"""The micro-batch run mode: its job and schedule."""

import dagster as dg

from orchestration.defs.micro_batch.jobs import micro_batch_job, micro_batch_schedule
from orchestration.defs.settings import settings_of_this_load


@dg.definitions
def defs() -> dg.Definitions:
    settings = settings_of_this_load()
    return dg.Definitions(
        jobs=[micro_batch_job(settings)], schedules=[micro_batch_schedule(settings)]
    )
