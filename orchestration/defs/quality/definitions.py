"""The quality checks of every table, their job and its cadence."""

import dagster as dg

from orchestration.defs.quality.checks import quality_checks, quality_job_and_cadence
from orchestration.defs.settings import settings_of_this_load


@dg.definitions
def defs() -> dg.Definitions:
    settings = settings_of_this_load()
    job, cadence = quality_job_and_cadence(settings)
    return dg.Definitions(asset_checks=quality_checks(settings), jobs=[job], sensors=[cadence])
