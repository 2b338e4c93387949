"""Kafka topics -> Delta `bronze.<topic>` tables: every record exactly as received, once.

Exactly-once comes from Spark's checkpointed Kafka offsets plus Delta's transactional sink
(it records each batch id per query and skips a batch it already committed), so a stream
killed at any moment and restarted neither loses nor doubles a record.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming import plan
from streaming.config import Settings, Source
from streaming.kafka_client import spark_kafka_options

LAYER = "bronze"
PARTITION_COLUMN = "ingest_date"
BRONZE_COLUMNS = (
    "key",
    "value",
    "headers",
    "topic",
    "partition",
    "offset",
    "kafka_timestamp",
    "kafka_timestamp_type",
    "ingest_time",
    PARTITION_COLUMN,
)


BRONZE_SCHEMA = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField(
            "headers",
            ArrayType(
                StructType([StructField("key", StringType()), StructField("value", BinaryType())])
            ),
        ),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("kafka_timestamp", TimestampType()),
        StructField("kafka_timestamp_type", IntegerType()),
        StructField("ingest_time", TimestampType()),
        StructField(PARTITION_COLUMN, DateType()),
    ]
)


def to_bronze(kafka_records: DataFrame, ingest_time: Column | None = None) -> DataFrame:
    """Kafka source rows (key, value, headers, topic, partition, offset, timestamp, ...) as
    bronze rows: nothing parsed, nothing dropped, plus when and on which day they were ingested.

    `ingest_time` defaults to the micro-batch's timestamp (`current_timestamp()`).
    """
    ingested = ingest_time if ingest_time is not None else F.current_timestamp()
    return kafka_records.select(
        F.col("key"),
        F.col("value"),
        F.col("headers"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("timestampType").alias("kafka_timestamp_type"),
        ingested.alias("ingest_time"),
    ).withColumn(PARTITION_COLUMN, F.to_date(F.col("ingest_time")))


def query_name(source: Source) -> str:
    """The name of the stream writing `bronze.<table>` (what progress rows and the UI show)."""
    return plan.query_name(LAYER, source.table_name)


def kafka_stream(spark: SparkSession, settings: Settings, source: Source) -> DataFrame:
    """The records of `source.topic` as a stream of bronze rows, read as conf says (starting
    offsets, batch limit, data loss); each batch's ingest time is its batch timestamp, which
    a replayed batch keeps."""
    bronze = settings.pipeline.bronze
    reader = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings.profile.kafka))
        .option("subscribe", source.topic)
        .option("startingOffsets", bronze.starting_offsets)
        .option("failOnDataLoss", str(bronze.fail_on_data_loss).lower())
        .option("includeHeaders", "true")
    )
    if bronze.max_offsets_per_trigger is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(bronze.max_offsets_per_trigger))
    return to_bronze(reader.load())


def bronze_writer(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    *,
    available_now: bool = False,
) -> DataStreamWriter:
    """The configured (not yet started) stream from `source.topic` to `bronze.<table>`."""
    writer = (
        kafka_stream(spark, settings, source)
        .writeStream.format("delta")
        .queryName(query_name(source))
        .outputMode("append")
        .partitionBy(PARTITION_COLUMN)
        .option("checkpointLocation", settings.checkpoint_path(LAYER, source.table_name))
    )
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=settings.pipeline.bronze.trigger_interval)


def start_bronze(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    *,
    available_now: bool = False,
) -> StreamingQuery:
    """Start the stream into `bronze.<table>` (created first, so its readers never miss it);
    returns the running query."""
    from streaming.tables import ensure_delta_table

    path = settings.table_path(LAYER, source.table_name)
    ensure_delta_table(spark, path, BRONZE_SCHEMA, PARTITION_COLUMN)
    return bronze_writer(spark, settings, source, available_now=available_now).start(path)
