"""The replay job."""

import dagster as dg

from orchestration.defs.replay.jobs import replay_job
from orchestration.defs.settings import settings_of_this_load


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[replay_job(settings_of_this_load())])
