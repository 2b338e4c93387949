"""Freshness the Dagster way: conf's SLAs as the assets' freshness policies.

A table of a layer that should always be moving (bronze, silver, gold) fails its policy when
its last materialization (the supervisor reports the streams' commits as materializations
without a run: streams/materializations.py) is older than its SLA in minutes
(`orchestration.freshness` in conf/pipeline.yaml), the number the freshness check uses too.
Quarantine and duplicates are quiet when all is well: no policy.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from streaming.catalog import BRONZE, GOLD
from streaming.config import Settings
from streaming.silver.events import SILVER

FRESH_LAYERS = (BRONZE, SILVER, GOLD)
MIN_WINDOW_MIN = 1.0  # Dagster's floor for a policy's window


def freshness_policy(settings: Settings, qualified: str) -> dg.FreshnessPolicy | None:
    """The policy of table 'layer.table'; None for a layer that may stay quiet."""
    if qualified.partition(".")[0] not in FRESH_LAYERS:
        return None
    sla = settings.pipeline.orchestration.freshness.sla_minutes(qualified)
    # Dagster's policies cannot fail sooner than a minute after the last materialization;
    # a shorter SLA still holds for the freshness check and its alerts.
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=max(sla, MIN_WINDOW_MIN)))
