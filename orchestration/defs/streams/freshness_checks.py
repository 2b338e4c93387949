"""The freshness check of every streamed table, evaluated at each supervisor tick.

Dagster shows a check's result against the materialization it followed: a quality run's
result on a table that the streams materialize every tick is "not evaluated" for the newest
data within seconds. So the supervisor, which reports the commits as runless
materializations (materializations.py), also evaluates the freshness check (the same rule
and SLA as the quality run's: streaming.quality.freshness) from what the Delta log told it:
for a table that committed in this tick, and for one whose verdict changed (a stream that
stopped turns its tables' check to failed once the SLA passes). A table turning stale
raises an alert once; fresh again, it may raise one again later.

The state between ticks (per table: the newest commit and Kafka time seen, the last verdict)
lives in the sensor's cursor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from orchestration.defs.freshness import FRESH_LAYERS
from orchestration.defs.keys import table_key
from orchestration.defs.quality.checks import freshness_evaluation
from orchestration.defs.streams.materializations import KAFKA_TIME, epoch
from streaming.catalog import pipeline_tables
from streaming.config import Settings
from streaming.delta_log import Written
from streaming.quality.freshness import Freshness


@dataclass(frozen=True)
class FreshnessTick:
    evaluations: list[dg.AssetCheckEvaluation]
    state: dict[str, dict[str, Any]]  # the cursor's part, by qualified table
    turned_stale: list[Freshness]  # tables whose check failed now and passed (or none) before


def evaluate_freshness(
    settings: Settings,
    wrote: Mapping[str, Written],
    state: Mapping[str, Mapping[str, Any]],
    now: float,
) -> FreshnessTick:
    """The freshness evaluations of this tick, given what each table wrote since the last
    tick (`wrote`) and the state the last tick left."""
    evaluations: list[dg.AssetCheckEvaluation] = []
    stale: list[Freshness] = []
    after: dict[str, dict[str, Any]] = {k: dict(v) for k, v in state.items()}
    for table in pipeline_tables(settings):
        if table.layer not in FRESH_LAYERS:
            continue
        seen = after.setdefault(table.qualified, {})
        written = wrote.get(table.qualified)
        if written is not None:
            seen["commit"] = written.landed_ms / 1000
            value = written.newest.get(KAFKA_TIME)
            at = epoch(value) if value is not None else None
            if at is not None:
                seen["kafka"] = max(at, float(seen.get("kafka", at)))
        if "commit" not in seen:
            continue  # nothing written yet: the quality run says whether the table exists
        found = Freshness(
            table.qualified,
            _utc(seen["commit"]),
            settings.pipeline.orchestration.freshness.sla_minutes(table.qualified),
            _utc(now),
            _utc(seen["kafka"]) if "kafka" in seen else None,
        )
        if written is None and seen.get("passed") == found.ok:
            continue  # the result shown still holds: it follows the newest materialization
        evaluations.append(freshness_evaluation(table_key(table), found))
        if not found.ok and seen.get("passed") is not False:
            stale.append(found)
        seen["passed"] = found.ok
    return FreshnessTick(evaluations, after, stale)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(float(epoch_s), UTC)
