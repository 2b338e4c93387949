"""Kafka topics as external source assets and the bronze tables fed from them, from conf."""

from collections.abc import Iterator, Sequence

import dagster as dg
from dagster import AssetExecutionContext

from orchestration.defs.freshness import freshness_policy
from orchestration.defs.held import held_elsewhere, state_while_held
from orchestration.defs.resources import HeadwaterResource
from streaming import plan
from streaming.bronze import LAYER, query_name
from streaming.catalog import pipeline_tables
from streaming.config import Settings, Source
from streaming.runner import run_streams
from streaming.tables import read_delta


def kafka_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey(["kafka", source.table_name])


def bronze_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey([LAYER, source.table_name])


def kafka_topics(settings: Settings) -> list[dg.AssetSpec]:
    """One external asset per source topic: data Dagster observes but does not produce."""
    return [
        dg.AssetSpec(
            kafka_key(s),
            description=f"Kafka topic {s.topic}. {s.description}".strip(),
            group_name="kafka",
            kinds={"kafka"},
            metadata={"topic": s.topic, "partitions": s.partitions},
        )
        for s in settings.pipeline.sources
    ]


def bronze_tables(settings: Settings) -> dg.AssetsDefinition:
    """All bronze tables as one subsettable asset: a run catches the selected ones up with
    Kafka (`availableNow`) through the same runner spark-submit uses."""
    sources: Sequence[Source] = settings.pipeline.sources
    specs = [
        dg.AssetSpec(
            bronze_key(s),
            deps=[kafka_key(s)],
            description=f"Every record of Kafka topic {s.topic}, as received, exactly once.",
            group_name=LAYER,
            kinds={"spark", "delta"},
            owners=list(settings.pipeline.orchestration.owners),
            freshness_policy=freshness_policy(settings, f"{LAYER}.{s.table_name}"),
            metadata={"path": settings.table_path(LAYER, s.table_name)},
        )
        for s in sources
    ]

    @dg.multi_asset(specs=specs, can_subset=True, name="bronze_catch_up")
    def _bronze(
        context: AssetExecutionContext, headwater: HeadwaterResource
    ) -> Iterator[dg.MaterializeResult[None]]:
        """Catch the selected bronze tables up with Kafka, then stop."""
        chosen = [s for s in sources if bronze_key(s) in context.selected_asset_keys]
        streams = {plan.stream_id(LAYER, s.topic) for s in chosen}
        busy = held_elsewhere(settings, sorted(streams))
        if busy is not None:
            tables = [t for t in pipeline_tables(settings) if t.stream in streams]
            yield from state_while_held(context, busy, tables)
            return
        spark = headwater.spark()
        rows = run_streams(
            spark, settings, [s.topic for s in chosen], available_now=True, layers=[LAYER]
        )
        for source in chosen:
            path = settings.table_path(LAYER, source.table_name)
            table = read_delta(spark, path)
            yield dg.MaterializeResult(
                asset_key=bronze_key(source),
                metadata={
                    "rows_written": dg.MetadataValue.int(rows.get(query_name(source), 0)),
                    "rows_total": dg.MetadataValue.int(table.count() if table is not None else 0),
                    "path": dg.MetadataValue.path(path),
                },
            )

    return _bronze
