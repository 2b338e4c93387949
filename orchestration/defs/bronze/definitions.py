"""Kafka topics and bronze tables, from conf."""

import dagster as dg

from orchestration.defs.bronze.assets import bronze_tables, kafka_topics
from orchestration.defs.settings import settings_of_this_load


@dg.definitions
def defs() -> dg.Definitions:
    settings = settings_of_this_load()
    return dg.Definitions(assets=[*kafka_topics(settings), bronze_tables(settings)])
