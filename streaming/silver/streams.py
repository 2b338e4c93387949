"""Wiring the silver streams: bronze Delta tables in, foreachBatch writers out."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from streaming import plan
from streaming.batches import BatchFunction, start_foreach_batch
from streaming.bronze import BRONZE_SCHEMA, PARTITION_COLUMN
from streaming.bronze import LAYER as BRONZE
from streaming.config import Settings, Source
from streaming.contracts.model import (
    CdcContract,
    Contract,
    contract_path,
    load_cdc_contract,
    load_contract,
)
from streaming.contracts.spark import check_records
from streaming.errors import ConfigError
from streaming.kafka_client import ensure_topics
from streaming.silver.cdc import (
    CdcBatchWriter,
    change_rows,
    current_rows,
    history_rows,
    parse_changes,
)
from streaming.silver.events import (
    DUPLICATES,
    EVENT_DATE,
    QUARANTINE,
    SILVER,
    EventBatchWriter,
    duplicate_rows,
    quarantine_rows,
    silver_rows,
)
from streaming.tables import all_delta_tables_exist, ensure_delta_tables
from streaming.topology import checkpoint_epoch, starting_version


def event_contract(settings: Settings, source: Source) -> Contract | None:
    """The contract of an event source that feeds silver; None for bronze-only sources.

    Raises ConfigError when an event source with silver on has no contract file.
    """
    if _contract_file(settings, source, "events", "shop.orders.yaml") is None:
        return None
    return load_contract(settings.conf_dir, source.topic)


def _contract_file(settings: Settings, source: Source, kind: str, example: str) -> Path | None:
    """The contract file of a `kind` source with silver on (None for other sources);
    ConfigError when it is missing."""
    if source.kind != kind or not source.silver:
        return None
    path = contract_path(settings.conf_dir, source.topic)
    if not path.is_file():
        what = "source" if kind == "events" else "CDC source"
        raise ConfigError(
            f"{what} {source.topic} has no contract at {path}: write one (conf/contracts/"
            f"{example} shows the format), or set silver: false on the source"
        )
    return path


def query_name(source: Source) -> str:
    return plan.query_name(SILVER, source.table_name)


def ensure_event_tables(
    spark: SparkSession, settings: Settings, source: Source, contract: Contract
) -> None:
    """Create silver, quarantine and duplicates tables of a topic with their schemas."""
    paths = [
        settings.table_path(BRONZE, source.table_name),
        settings.table_path(SILVER, contract.silver_table),
        settings.table_path(QUARANTINE, source.table_name),
        settings.table_path(DUPLICATES, source.table_name),
    ]
    if all_delta_tables_exist(spark, paths):
        return
    empty = check_records(spark.createDataFrame([], BRONZE_SCHEMA), contract)
    silver = silver_rows(empty, contract)
    ensure_delta_tables(
        spark,
        [
            (paths[0], BRONZE_SCHEMA, PARTITION_COLUMN),
            (paths[1], silver.schema, EVENT_DATE),
            (paths[2], quarantine_rows(empty).schema, "ingest_date"),
            (paths[3], duplicate_rows(silver, contract.fields.id).schema, "ingest_date"),
        ],
    )


def ensure_dead_letter_topic(settings: Settings, source: Source) -> None:
    """Create the source's dead-letter topic when conf asks for one: brokers often refuse to
    create topics on first write (ours does)."""
    dead_letter = settings.pipeline.silver.dead_letter_topic(source.topic)
    if dead_letter:
        dlq = source.model_copy(update={"topic": dead_letter, "silver": False})
        ensure_topics(settings.profile.kafka, [dlq])


def start_silver_events(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    contract: Contract,
    *,
    available_now: bool = False,
) -> StreamingQuery:
    """Start the stream bronze.<topic> -> silver / quarantine / duplicates."""
    ensure_event_tables(spark, settings, source, contract)
    ensure_dead_letter_topic(settings, source)
    return _start(
        spark,
        settings,
        source,
        contract.silver_table,
        EventBatchWriter(settings, source, contract, app_id=_app_id(spark, settings, source)),
        available_now,
    )


def cdc_contract(settings: Settings, source: Source) -> CdcContract | None:
    """The contract of a CDC source that feeds silver; None for other sources.

    Raises ConfigError when a CDC source with silver on has no contract file.
    """
    if _contract_file(settings, source, "cdc", "shop.public.customers.yaml") is None:
        return None
    return load_cdc_contract(settings.conf_dir, source.topic)


def ensure_cdc_tables(
    spark: SparkSession, settings: Settings, source: Source, contract: CdcContract
) -> None:
    """Create the changes, current-state and history tables of a CDC topic."""
    table = contract.silver_table
    paths = [
        settings.table_path(BRONZE, source.table_name),
        settings.table_path(SILVER, plan.cdc_tables(table).changes),
        settings.table_path(SILVER, table),
        settings.table_path(SILVER, plan.cdc_tables(table).history),
        settings.table_path(QUARANTINE, source.table_name),
        settings.table_path(DUPLICATES, source.table_name),
    ]
    if all_delta_tables_exist(spark, paths):
        return
    empty = parse_changes(spark.createDataFrame([], BRONZE_SCHEMA), contract)
    changes = change_rows(empty, contract)
    dups = changes.select(
        F.col("_change_key").alias("event_id"),
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "ingest_time",
        F.to_date("ingest_time").alias("ingest_date"),
    )
    ensure_delta_tables(
        spark,
        [
            (paths[0], BRONZE_SCHEMA, PARTITION_COLUMN),
            (paths[1], changes.schema, None),
            (paths[2], current_rows(changes, contract).drop("op").schema, None),
            (paths[3], history_rows(changes, contract).schema, None),
            (paths[4], quarantine_rows(empty).schema, "ingest_date"),
            (paths[5], dups.schema, "ingest_date"),
        ],
    )


def start_silver_cdc(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    contract: CdcContract,
    *,
    available_now: bool = False,
) -> StreamingQuery:
    """Start the stream bronze.<cdc topic> -> silver changes, current state and history."""
    ensure_cdc_tables(spark, settings, source, contract)
    return _start(
        spark,
        settings,
        source,
        contract.silver_table,
        CdcBatchWriter(settings, source, contract, app_id=_app_id(spark, settings, source)),
        available_now,
    )


def _app_id(spark: SparkSession, settings: Settings, source: Source) -> str:
    """The app id of the layered silver writers of `source`: a checkpoint set aside by a
    switch of topology starts its batch ids again, so its successor's app id is new."""
    silver = [
        c.silver_table
        for c in (event_contract(settings, source), cdc_contract(settings, source))
        if c
    ]
    checkpoint = settings.checkpoint_path(SILVER, silver[0])
    return f"headwater-{SILVER}-{source.table_name}{checkpoint_epoch(settings, checkpoint)}"


def _start(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    silver_table: str,
    write: BatchFunction,
    available_now: bool,
) -> StreamingQuery:
    """The silver query of `source`: `write` for every micro-batch of its bronze table."""
    bronze = settings.table_path(BRONZE, source.table_name)
    checkpoint = settings.checkpoint_path(SILVER, silver_table)
    reader = spark.readStream.format("delta")
    start = starting_version(settings, checkpoint, bronze)
    if start is not None:  # a fresh checkpoint after the fused topology ran (topology.py)
        reader = reader.option("startingVersion", start)
    return start_foreach_batch(
        reader.load(bronze),
        query_name(source),
        write,
        checkpoint,
        trigger_interval=settings.pipeline.silver.trigger_interval,
        available_now=available_now,
    )
