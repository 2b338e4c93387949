"""Asset keys of headwater's tables: [layer, table], and ["kafka", table] for topics."""

from __future__ import annotations

import dagster as dg

from streaming.catalog import Table


def key_of(qualified: str) -> dg.AssetKey:
    """The asset key of 'layer.table' (or 'kafka.<table>' for a topic)."""
    layer, _, name = qualified.partition(".")
    return dg.AssetKey([layer, name])


def table_key(table: Table) -> dg.AssetKey:
    return key_of(table.qualified)
