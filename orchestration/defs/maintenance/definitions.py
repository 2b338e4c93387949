"""Table maintenance: its job and schedule."""

import dagster as dg

from orchestration.defs.maintenance.jobs import maintenance_job, maintenance_schedule
from orchestration.defs.settings import settings_of_this_load


@dg.definitions
def defs() -> dg.Definitions:
    settings = settings_of_this_load()
    return dg.Definitions(
        jobs=[maintenance_job(settings)], schedules=[maintenance_schedule(settings)]
    )
