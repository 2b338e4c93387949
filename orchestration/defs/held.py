"""What "Materialize" does on a streamed table while another process runs its stream.

The continuous pipeline (or `headwater run`, the demo) holds each stream's lock and keeps its
tables up to date: a catch-up run has nothing to add and could not take the lock. Such a run
says so in its first log line, with what to do instead, and records the tables' current
state from their Delta logs (no Spark started) instead of failing with a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import dagster as dg

from orchestration.defs.keys import table_key
from streaming.catalog import Table
from streaming.config import Settings
from streaming.delta_log import DeltaLogError, latest_version, live_rows
from streaming.locks import Holder, holder


def held_elsewhere(settings: Settings, streams: Iterable[str]) -> Holder | None:
    """The first holder of one of `streams`' locks, if any."""
    return next((h for s in streams if (h := holder(settings, s)) is not None), None)


def state_while_held(
    context: dg.AssetExecutionContext, h: Holder, tables: Sequence[Table]
) -> Iterator[dg.MaterializeResult[None]]:
    """Say why this run catches nothing up, then record each table's state as it is."""
    context.log.warning(
        f"stream {h.stream} is run by {h.describe()}, which keeps "
        f"{', '.join(t.qualified for t in tables)} up to date as it streams: there is nothing "
        "to catch up, so this run records the tables' current state. To recompute days from "
        "bronze, launch a backfill of the chosen partitions (Materialize -> partitions; it "
        "rebuilds them beside the running stream); to run the stream here, stop the other "
        "process first (the continuous run: turn off the supervisor sensor and terminate it)."
    )
    for table in tables:
        metadata: dict[str, dg.RawMetadataValue] = {
            "mode": "held",
            "held_by": h.describe(),
            "path": dg.MetadataValue.path(table.path),
        }
        try:
            version, rows = latest_version(table.path), live_rows(table.path)
        except DeltaLogError:
            version, rows = None, None
        if version is not None:
            metadata["delta_version"] = dg.MetadataValue.int(version)
        if rows is not None:
            metadata["rows_total"] = dg.MetadataValue.int(rows)
        yield dg.MaterializeResult(asset_key=table_key(table), metadata=metadata)
