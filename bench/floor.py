"""The floor of a three-hop chain on this machine: what Spark and Delta alone cost a row on its
way from Kafka to gold, with nothing of headwater's (contracts, rules, deduplication, progress
recording) in it.

Three queries in one driver, on the chain's trigger and session settings, each layer a Delta
stream of the one before, as ARCHITECTURE.md has it:
- bronze: Kafka -> Delta append of the raw records (the baseline's query);
- silver: bronze's Delta stream -> foreachBatch, the batch appended once (txnAppId /
  txnVersion), the value decoded to a string and nothing else;
- gold: silver's Delta stream -> foreachBatch, gold's own shape at its smallest: the minutes
  the batch touched, their counts recomputed from silver and MERGEd.

Set against the chain, it says how much of the chain's freshness is the engine's and how much
is headwater's.

The fused floor is the same three writes done one after the other in a single query's
foreachBatch (Kafka -> bronze, silver, gold, each once per batch): no hop waits for a trigger
or reads the Delta table before it. It says what an architecture without Delta streams
between the layers could reach here.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.types import (
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming.batches import start_foreach_batch
from streaming.bronze import BRONZE_SCHEMA as HEADWATER_BRONZE
from streaming.config import Settings, Source
from streaming.kafka_client import spark_kafka_options
from streaming.tables import append_once, ensure_delta_tables

LAYER = "bench"
BRONZE, SILVER, GOLD = "floor_bronze", "floor_silver", "floor_gold"

RAW = ("key", "value", "topic", "partition", "offset", "kafka_timestamp")
# The floor's bronze: bronze's own columns of a Kafka record, nothing added.
BRONZE_SCHEMA = StructType([HEADWATER_BRONZE[name] for name in RAW])
SILVER_SCHEMA = StructType(
    [
        StructField("value", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("kafka_timestamp", TimestampType()),
    ]
)
GOLD_SCHEMA = StructType(
    [StructField("minute", TimestampType()), StructField("events", LongType())]
)


def paths(settings: Settings) -> dict[str, tuple[str, str]]:
    """Each floor layer's (table, checkpoint) location."""
    return {
        layer: (settings.table_path(LAYER, name), settings.checkpoint_path(LAYER, name))
        for layer, name in (("bronze", BRONZE), ("silver", SILVER), ("gold", GOLD))
    }


class SilverAppend:
    """The silver hop: the batch's values as strings, appended once per batch."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.select(
            F.col("value").cast("string").alias("value"), "partition", "offset", "kafka_timestamp"
        )
        append_once(rows, self.path, None, f"floor-{SILVER}", batch_id)


class GoldMinutes:
    """The gold hop: events per minute, the minutes a batch touched recomputed from silver
    and MERGEd, so a replayed batch writes the same rows."""

    def __init__(self, silver: str, gold: str) -> None:
        self.silver, self.gold = silver, gold

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        from delta.tables import DeltaTable

        spark = batch.sparkSession
        minute = F.date_trunc("minute", "kafka_timestamp").alias("minute")
        touched = batch.select(minute).distinct()
        counts = (
            spark.read.format("delta")
            .load(self.silver)
            .select(minute)
            .join(F.broadcast(touched), "minute")
            .groupBy("minute")
            .agg(F.count(F.lit(1)).alias("events"))
        )
        (
            DeltaTable.forPath(spark, self.gold)
            .alias("t")
            .merge(counts.alias("s"), "t.minute = s.minute")
            .whenMatchedUpdate(set={"events": "s.events"})
            .whenNotMatchedInsertAll()
            .execute()
        )


def raw_append(
    spark: SparkSession, settings: Settings, source: Source, name: str, table: str, checkpoint: str
) -> StreamingQuery:
    """Query `name`: the topic's raw records (key, value, coordinates) appended to the Delta
    table at `table`, nothing parsed, on bronze's trigger and batch limit (the baseline)."""
    return (
        kafka_records(spark, settings, source)
        .writeStream.format("delta")
        .queryName(name)
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=settings.pipeline.bronze.trigger_interval)
        .start(table)
    )


def kafka_records(spark: SparkSession, settings: Settings, source: Source) -> DataFrame:
    """The topic's records as a stream (key, value, coordinates), on bronze's batch limit."""
    bronze = settings.pipeline.bronze
    reader = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings.profile.kafka))
        .option("subscribe", source.topic)
        .option("startingOffsets", "earliest")
    )
    if bronze.max_offsets_per_trigger is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(bronze.max_offsets_per_trigger))
    return reader.load().withColumnRenamed("timestamp", "kafka_timestamp").select(*RAW)


def ensure_tables(spark: SparkSession, where: dict[str, tuple[str, str]]) -> None:
    ensure_delta_tables(
        spark,
        [
            (where["bronze"][0], BRONZE_SCHEMA, None),
            (where["silver"][0], SILVER_SCHEMA, None),
            (where["gold"][0], GOLD_SCHEMA, None),
        ],
    )


def start(spark: SparkSession, settings: Settings, source: Source) -> list[StreamingQuery]:
    """The floor's three queries, started on the chain's trigger."""
    where = paths(settings)
    ensure_tables(spark, where)
    trigger = settings.pipeline.bronze.trigger_interval
    bronze = raw_append(spark, settings, source, BRONZE, *where["bronze"])
    silver = start_foreach_batch(
        spark.readStream.format("delta").load(where["bronze"][0]),
        SILVER,
        SilverAppend(where["silver"][0]),
        where["silver"][1],
        trigger_interval=trigger,
        available_now=False,
    )
    gold = start_foreach_batch(
        spark.readStream.format("delta").load(where["silver"][0]),
        GOLD,
        GoldMinutes(where["silver"][0], where["gold"][0]),
        where["gold"][1],
        trigger_interval=trigger,
        available_now=False,
    )
    return [bronze, silver, gold]


FUSED = "floor_fused"


class FusedWrites:
    """The fused floor's batch: the Kafka records appended to bronze once, then the silver
    and gold hops on the same rows."""

    def __init__(self, where: dict[str, tuple[str, str]]) -> None:
        self.bronze = where["bronze"][0]
        self.silver = SilverAppend(where["silver"][0])
        self.gold = GoldMinutes(where["silver"][0], where["gold"][0])

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        raw = batch.localCheckpoint(eager=False)  # Kafka is read once, by the bronze append
        try:
            append_once(raw, self.bronze, None, f"floor-{BRONZE}", batch_id)
            self.silver(raw, batch_id)
            self.gold(raw, batch_id)
        finally:
            raw.unpersist()


def fused_checkpoint(settings: Settings) -> str:
    return settings.checkpoint_path(LAYER, FUSED)


def start_fused(spark: SparkSession, settings: Settings, source: Source) -> list[StreamingQuery]:
    """The fused floor's one query, on the chain's trigger."""
    where = paths(settings)
    ensure_tables(spark, where)
    return [
        start_foreach_batch(
            kafka_records(spark, settings, source),
            FUSED,
            FusedWrites(where),
            fused_checkpoint(settings),
            trigger_interval=settings.pipeline.bronze.trigger_interval,
            available_now=False,
        )
    ]
