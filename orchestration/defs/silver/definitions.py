"""Silver, quarantine and duplicates tables (and a CDC topic's changes and history)."""

import dagster as dg

from orchestration.defs.settings import settings_of_this_load
from orchestration.defs.silver.assets import silver_assets


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=silver_assets(settings_of_this_load()))
