"""Gold tables of conf/gold/."""

import dagster as dg

from orchestration.defs.gold.assets import gold_assets
from orchestration.defs.settings import settings_of_this_load


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=gold_assets(settings_of_this_load()))
