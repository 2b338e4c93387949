"""The continuous run mode: its job and the supervisor sensor."""

import dagster as dg

from orchestration.defs.settings import settings_of_this_load
from orchestration.defs.streams import continuous_job, supervisor_sensor


@dg.definitions
def defs() -> dg.Definitions:
    settings = settings_of_this_load()
    return dg.Definitions(jobs=[continuous_job(settings)], sensors=[supervisor_sensor(settings)])
