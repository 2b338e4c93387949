"""Day partitions of the silver and gold tables whose rows belong to a day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

import dagster as dg

from streaming.config import Settings


def day_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """Days in UTC from conf's first day through today (end_offset=1: today is a partition
    too, so the micro-batch schedule materializes it as it fills)."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.pipeline.orchestration.partitions_start,
        timezone="UTC",
        end_offset=1,
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def days_of(keys: list[str]) -> list[date]:
    return [date.fromisoformat(k) for k in keys]


def day_range(first: str, last: str) -> list[str]:
    """Partition keys from `first` to `last`, inclusive."""
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


class TableRunConfig(dg.Config):  # type: ignore[misc]
    """How a materialization of a silver or gold asset brings it up to date.

    catch_up: run the table's stream with availableNow (what the micro-batch schedule does);
    rebuild: recompute the run's day partitions (or the whole table, if not partitioned by
    day) from bronze and replace them; auto (default): rebuild in a backfill or when the run's
    days do not include today, catch up otherwise.
    """

    mode: Literal["auto", "catch_up", "rebuild"] = "auto"


def wants_rebuild(context: dg.AssetExecutionContext, config: TableRunConfig) -> bool:
    if config.mode != "auto":
        return config.mode == "rebuild"
    if "dagster/backfill" in context.run.tags:
        return True
    if context.has_partition_key or context.has_partition_key_range:
        return today() not in context.partition_keys
    return False
