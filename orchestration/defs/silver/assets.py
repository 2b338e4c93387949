"""Silver, quarantine and duplicates tables as assets, one multi-asset per source topic.

Each topic's silver stream writes all of its tables at once, so they materialize together.
Event topics are partitioned by day (silver by event date, quarantine and duplicates by
ingest date); CDC tables are state, rebuilt whole.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.freshness import freshness_policy
from orchestration.defs.held import held_elsewhere, state_while_held
from orchestration.defs.keys import key_of, table_key
from orchestration.defs.metadata import delta_metadata, stream_metadata
from orchestration.defs.partitions import TableRunConfig, day_partitions, days_of, wants_rebuild
from orchestration.defs.resources import HeadwaterResource
from streaming import plan
from streaming.catalog import Table, pipeline_tables
from streaming.config import Settings, Source
from streaming.plan import SILVER
from streaming.rebuild import Rebuilt, rebuild_cdc, rebuild_event_days
from streaming.runner import run_streams
from streaming.silver.streams import cdc_contract, event_contract, query_name

KINDS = {"spark", "delta"}


def table_spec(
    settings: Settings, table: Table, partitions: dg.PartitionsDefinition | None
) -> dg.AssetSpec:
    """The asset of a pipeline table: its layer is its group, its upstream tables its deps."""
    return dg.AssetSpec(
        table_key(table),
        deps=[key_of(u) for u in table.upstream],
        description=table.description,
        group_name=table.layer,
        kinds=KINDS,
        owners=list(settings.pipeline.orchestration.owners),
        partitions_def=partitions,
        freshness_policy=freshness_policy(settings, table.qualified),
        metadata={
            "path": dg.MetadataValue.path(table.path),
            "stream": table.stream,
            **({"day_column": table.day_column} if table.day_column else {}),
        },
        tags={"headwater/layer": table.layer},
    )


def silver_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """One multi-asset per source topic with a contract."""
    tables = pipeline_tables(settings)
    return [
        _topic_assets(
            settings,
            source,
            [t for t in tables if t.stream == plan.stream_id(SILVER, source.topic)],
        )
        for source in settings.pipeline.sources
        if any(t.stream == plan.stream_id(SILVER, source.topic) for t in tables)
    ]


def _topic_assets(settings: Settings, source: Source, tables: list[Table]) -> dg.AssetsDefinition:
    by_day = any(t.day_column for t in tables)
    partitions = day_partitions(settings) if by_day else None
    specs = [table_spec(settings, t, partitions) for t in tables]

    @dg.multi_asset(
        specs=specs,
        name=f"silver_{source.table_name}",
        backfill_policy=dg.BackfillPolicy.single_run() if by_day else None,
        op_tags={"headwater/stream": plan.stream_id(SILVER, source.topic)},
    )
    def _silver(
        context: dg.AssetExecutionContext, headwater: HeadwaterResource, config: TableRunConfig
    ) -> Iterator[dg.MaterializeResult[None]]:
        """Catch the topic's silver stream up with bronze, or rebuild days from bronze."""
        rebuild = wants_rebuild(context, config)
        busy = None if rebuild else held_elsewhere(settings, [plan.stream_id(SILVER, source.topic)])
        if busy is not None:
            yield from state_while_held(context, busy, tables)
            return
        spark = headwater.spark()
        since = datetime.now(UTC).replace(tzinfo=None)
        rebuilt: Rebuilt | None = None
        if rebuild:
            events, cdc = event_contract(settings, source), cdc_contract(settings, source)
            if events is not None:
                rebuilt = rebuild_event_days(
                    spark, settings, source, events, days_of(context.partition_keys)
                )
            elif cdc is not None:
                rebuilt = rebuild_cdc(spark, settings, source, cdc)
            context.log.info(f"rebuilt from bronze: {rebuilt.rows if rebuilt else {}}")
        else:
            run_streams(
                spark,
                settings,
                [source.topic],
                available_now=True,
                layers=["silver"],
                owner=f"dagster run {context.run.run_id}",
            )
        streamed = stream_metadata(spark, settings, query_name(source), since)
        for table in tables:
            metadata = {
                **delta_metadata(spark, table.path),
                "mode": "rebuild" if rebuilt else "catch_up",
            }
            if rebuilt is not None:
                metadata["rows_rebuilt"] = dg.MetadataValue.int(
                    rebuilt.rows.get(table.qualified, 0)
                )
            else:
                metadata.update(streamed)
            yield dg.MaterializeResult(asset_key=table_key(table), metadata=metadata)

    return _silver
