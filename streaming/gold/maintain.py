"""Keeping gold tables exact, incrementally.

One query per gold table reads the new rows of all its source tables (a union of Delta
streams, so the table has one writer and one checkpoint), maps them to the gold keys they
touch, recomputes those keys from the declaration, and MERGEs: keys that still have a row are
updated or inserted, keys that no longer have one are deleted. The recompute reads the sources
as they are now, so a replayed batch writes the same rows: the MERGE is idempotent.
The gold queries are the same in both topologies (streaming/fused.py).
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from streaming import plan
from streaming.batches import start_foreach_batch
from streaming.config import Settings
from streaming.gold.definitions import GoldSource, GoldTable, evaluate, with_keys
from streaming.tables import ensure_delta_table, has_delta_log
from streaming.topology import starting_version

LAYER = "gold"


def query_name(table: GoldTable) -> str:
    return plan.query_name(LAYER, table.name)


class GoldBatchWriter:
    """The foreachBatch function of one gold table."""

    def __init__(self, settings: Settings, table: GoldTable) -> None:
        self.settings = settings
        self.table = table
        self.path = settings.table_path(LAYER, table.name)
        self.key_columns = [f"_gk_{k}" for k in sorted(table.keys)]

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # This thread's jobs run in the query's own scheduler pool (FAIR between pools): a
        # MERGE does not queue the Kafka queries' batches behind it.
        batch.sparkSession.sparkContext.setLocalProperty(
            "spark.scheduler.pool", query_name(self.table)
        )
        touched = batch.select(*self.key_columns).distinct().localCheckpoint(eager=True)
        try:
            if not touched.isEmpty():
                # The query's own session: its temp views are its own.
                self._merge(batch.sparkSession, touched)
        finally:
            touched.unpersist()

    def _merge(self, spark: SparkSession, touched: DataFrame) -> None:
        from delta.tables import DeltaTable

        rows = evaluate(spark, self.settings, self.table, touched)
        keyed = rows.select("*", *[F.col(k).alias(f"_gk_{k}") for k in sorted(self.table.keys)])
        # Every touched key once: with its recomputed row, or marked to go.
        source = touched.join(keyed.withColumn("_present", F.lit(True)), self.key_columns, "left")
        condition = " AND ".join(f"t.`{k}` <=> s.`_gk_{k}`" for k in self.table.keys)
        columns = [c for c in rows.columns]
        (
            DeltaTable.forPath(spark, self.path)
            .alias("t")
            .merge(source.alias("s"), condition)
            .whenMatchedDelete(condition="s._present IS NULL")
            .whenMatchedUpdate(set={c: f"s.`{c}`" for c in columns})
            .whenNotMatchedInsert(condition="s._present", values={c: f"s.`{c}`" for c in columns})
            .execute()
        )


def changes_stream(spark: SparkSession, settings: Settings, table: GoldTable) -> DataFrame:
    """The new rows of every source table of `table`, as the gold keys they touch."""
    checkpoint = settings.checkpoint_path(LAYER, table.name)

    def new_rows(source: GoldSource) -> DataFrame:
        path = settings.table_path_by_name(source.table)
        # A backfill's rewrite of a silver day is not new rows: the backfill rebuilds the
        # gold rows it affects itself (streaming/rebuild.py).
        reader = spark.readStream.format("delta").option("skipChangeCommits", "true")
        start = starting_version(settings, checkpoint, path)
        if start is not None:  # a fresh checkpoint after the fused topology ran (topology.py)
            reader = reader.option("startingVersion", start)
        return with_keys(reader.load(path), source)

    streams = [
        new_rows(s).select(*[F.col(f"_gk_{k}") for k in sorted(table.keys)]) for s in table.sources
    ]
    return reduce(lambda a, b: a.unionByName(b), streams)


def ensure_gold_table(spark: SparkSession, settings: Settings, table: GoldTable) -> None:
    """Create the gold table with the schema its SQL gives."""
    path = settings.table_path(LAYER, table.name)
    if has_delta_log(spark, path):
        return
    empty = evaluate(spark, settings, table).limit(0)
    ensure_delta_table(spark, path, empty.schema)


def start_gold(
    spark: SparkSession, settings: Settings, table: GoldTable, *, available_now: bool = False
) -> StreamingQuery:
    """Start the query that keeps gold.<table> equal to its definition."""
    ensure_gold_table(spark, settings, table)
    return start_foreach_batch(
        changes_stream(spark, settings, table),
        query_name(table),
        GoldBatchWriter(settings, table),
        settings.checkpoint_path(LAYER, table.name),
        trigger_interval=settings.pipeline.gold.trigger_interval,
        available_now=available_now,
    )
