"""The streams' commits as Dagster materializations, reported without a run.

A continuous stream commits every second; Dagster's pages (the Catalog's "last materialized",
an asset's Plots, its freshness status) read materializations. Each tick of the supervisor
reads, from every table's Delta log alone (no Spark), the data commits since the version it
reported last (the sensor's cursor), and reports one materialization per table that saw
some (per day partition written, for a day-partitioned table): at a pace the instance holds,
whatever the trigger.

Metadata: the Delta version, the data commits it covers, the net rows they added (added
files' rows less removed files'; over a table's reports they sum to its rows), the rows it
holds, the newest event time and Kafka time among the added rows, and how long after them
the commit landed (freshness, plotted over time).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

import dagster as dg

from orchestration.defs.keys import table_key
from streaming.catalog import Table, pipeline_tables
from streaming.config import Settings
from streaming.delta_log import DeltaLogError, Written, written_since

KAFKA_TIME = "kafka_timestamp"


def report_commits(
    settings: Settings, reported: Mapping[str, int], now: float
) -> tuple[list[dg.AssetMaterialization], dict[str, int], dict[str, Written]]:
    """(the materializations of every table's data commits after the version `reported` for
    it, the versions now reported by table, what each table that committed wrote)."""
    events: list[dg.AssetMaterialization] = []
    versions = dict(reported)
    wrote: dict[str, Written] = {}
    first_day = date.fromisoformat(str(settings.pipeline.orchestration.partitions_start))
    today = datetime.fromtimestamp(now, UTC).date()
    for table in pipeline_tables(settings):
        columns = [c for c in (table.event_time, KAFKA_TIME) if c]
        try:
            written = written_since(
                table.path,
                reported.get(table.qualified, -1),
                day_column=table.day_column,
                columns=columns,
            )
        except DeltaLogError:
            continue  # not on local disk: the runs' materializations describe it
        if written is None:
            continue
        versions[table.qualified] = written.version
        wrote[table.qualified] = written
        events += _materializations(table, written, first_day, today)
    return events, versions, wrote


def _materializations(
    table: Table, written: Written, first_day: date, today: date
) -> list[dg.AssetMaterialization]:
    """One materialization for `written`, or one per day partition it wrote (rows of days
    outside the partitions go with the newest day inside; none inside: unpartitioned)."""
    metadata = _metadata(table, written)
    if table.day_column is None:
        return [dg.AssetMaterialization(table_key(table), metadata=metadata)]
    days = {
        day: rows
        for day, rows in written.rows_by_day.items()
        if (when := _date(day)) is not None and first_day <= when <= today
    }
    outside = written.rows_added - sum(days.values())
    if not days:
        return [dg.AssetMaterialization(table_key(table), metadata=metadata)]
    newest = max(days)
    out = []
    for day, rows in sorted(days.items()):
        per_day = {
            **metadata,
            "rows_added": dg.MetadataValue.int(rows + (outside if day == newest else 0)),
            "days_written": dg.MetadataValue.text(", ".join(sorted(written.rows_by_day))),
        }
        out.append(dg.AssetMaterialization(table_key(table), partition=day, metadata=per_day))
    return out


def _metadata(table: Table, written: Written) -> dict[str, dg.RawMetadataValue]:
    landed = written.landed_ms / 1000
    metadata: dict[str, dg.RawMetadataValue] = {
        "delta_version": dg.MetadataValue.int(written.version),
        "commits": dg.MetadataValue.int(written.commits),
        "rows_added": dg.MetadataValue.int(written.rows_added),
        "reported_by": "headwater supervisor (runless, from the Delta log)",
        "dagster/last_updated_timestamp": dg.MetadataValue.timestamp(landed),
    }
    if written.rows_total is not None:
        metadata["rows_total"] = dg.MetadataValue.int(written.rows_total)
        metadata["dagster/row_count"] = dg.MetadataValue.int(written.rows_total)
    for column, name in ((table.event_time, "event"), (KAFKA_TIME, "kafka")):
        value = written.newest.get(column or "")
        at = epoch(value) if value is not None else None
        if value is not None and at is not None:
            metadata[f"newest_{name}_time"] = dg.MetadataValue.text(value)
            metadata[f"seconds_{name}_to_visible"] = dg.MetadataValue.float(round(landed - at, 1))
    return metadata


def _date(day: str) -> date | None:
    try:
        return date.fromisoformat(day)
    except ValueError:  # not a date: its rows go with the newest day written
        return None


def epoch(value: str) -> float | None:
    """Epoch seconds of a timestamp from Delta's statistics (ISO 8601, UTC when unmarked);
    None for a value that is no timestamp (a column of another type)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
