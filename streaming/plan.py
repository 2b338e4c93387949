"""The names of the pipeline's streams, queries and derived tables, composed here only.

A stream is what one checkpoint writes: `<layer>:<topic>` for bronze and silver, `gold:<table>`
for a gold table. A query is what Spark runs and shows: `<layer>_<name>` (`fused_<table>` for
a fused topic's query). A CDC topic's silver table `<t>` comes with `<t>_changes` (every
change once) and `<t>_history` (SCD2). The runner, the catalog, Dagster's assets, checks and
supervisor, the demo, rebuild, replay and reconcile take their names from here.
"""

from __future__ import annotations

from dataclasses import dataclass

BRONZE, SILVER, GOLD, FUSED = "bronze", "silver", "gold", "fused"
CHANGES_SUFFIX, HISTORY_SUFFIX = "_changes", "_history"


def stream_id(layer: str, name: str) -> str:
    """The stream of `layer` for a topic (bronze, silver) or a gold table's name."""
    return f"{layer}:{name}"


def query_name(layer: str, table_name: str) -> str:
    """The Spark query of a layer (or `fused`) for a topic's table name or a gold table."""
    return f"{layer}_{table_name}"


@dataclass(frozen=True)
class CdcTables:
    """The silver tables of one CDC topic, by table name (without the layer)."""

    current: str
    changes: str
    history: str

    @property
    def all(self) -> tuple[str, str, str]:
        return (self.current, self.changes, self.history)


def cdc_tables(silver_table: str) -> CdcTables:
    """The tables a CDC topic whose contract names `silver_table` writes in silver."""
    return CdcTables(
        silver_table, f"{silver_table}{CHANGES_SUFFIX}", f"{silver_table}{HISTORY_SUFFIX}"
    )


def qualified(layer: str, table: str) -> str:
    return f"{layer}.{table}"
