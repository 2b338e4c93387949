"""Gold tables as assets, one per conf/gold/<name>.yaml, downstream of the silver tables its
SQL reads. A gold table with a day_column is partitioned by day; others rebuild whole."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from orchestration.defs.held import held_elsewhere, state_while_held
from orchestration.defs.metadata import delta_metadata, stream_metadata
from orchestration.defs.partitions import TableRunConfig, day_partitions, days_of, wants_rebuild
from orchestration.defs.resources import HeadwaterResource
from orchestration.defs.silver.assets import table_spec
from streaming.catalog import GOLD, Table, pipeline_tables
from streaming.config import Settings
from streaming.gold.definitions import GoldTable, load_gold_tables
from streaming.gold.maintain import query_name
from streaming.rebuild import rebuild_gold
from streaming.runner import run_streams


def gold_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    tables = {t.name: t for t in pipeline_tables(settings) if t.layer == GOLD}
    return [_gold_asset(settings, g, tables[g.name]) for g in load_gold_tables(settings)]


def _gold_asset(settings: Settings, gold: GoldTable, table: Table) -> dg.AssetsDefinition:
    partitions = day_partitions(settings) if gold.day_column else None

    @dg.multi_asset(
        specs=[table_spec(settings, table, partitions)],
        name=f"gold_{gold.name}",
        backfill_policy=dg.BackfillPolicy.single_run() if partitions else None,
        op_tags={"headwater/stream": table.stream},
    )
    def _gold(
        context: dg.AssetExecutionContext, headwater: HeadwaterResource, config: TableRunConfig
    ) -> Iterator[dg.MaterializeResult[None]]:
        """Catch the gold stream up with silver, or rebuild days (or all) from its definition."""
        rebuild = wants_rebuild(context, config)
        busy = None if rebuild else held_elsewhere(settings, [table.stream])
        if busy is not None:
            yield from state_while_held(context, busy, [table])
            return
        spark = headwater.spark()
        since = datetime.now(UTC).replace(tzinfo=None)
        metadata: dict[str, Any]
        if rebuild:
            days = days_of(context.partition_keys) if partitions else None
            # A gold stream MERGEing meanwhile conflicts in Delta, and one of the two retries.
            rebuilt = rebuild_gold(spark, settings, gold, days)
            metadata = {
                "mode": "rebuild",
                "rows_rebuilt": dg.MetadataValue.int(rebuilt.rows[table.qualified]),
            }
        else:
            run_streams(
                spark,
                settings,
                available_now=True,
                layers=[GOLD],
                owner=f"dagster run {context.run.run_id}",
                gold_tables=[gold.name],
            )
            metadata = {
                "mode": "catch_up",
                **stream_metadata(spark, settings, query_name(gold), since),
            }
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey([GOLD, gold.name]),
            metadata={**delta_metadata(spark, table.path), **metadata},
        )

    return _gold
