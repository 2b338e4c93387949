"""The fused topology: one query per Kafka topic writes every layer in each micro-batch.

The batch's Kafka records are appended to bronze; then the source's silver writer runs on
the same rows (an event topic: silver, quarantine, duplicates; a CDC topic: the changes,
current state and history); then every gold table the topic feeds recomputes the keys the
batch's new silver rows touched and MERGEs them. No layer waits for a trigger or re-reads the
layer before it as a Delta stream.

Exactly once: the query's checkpoint is bronze's (the Kafka offsets carry over between the
topologies); each write is idempotent on its own (bronze and silver appends once per
(writer, batch id); a gold MERGE recomputes from silver as it is), so a batch replayed after
a crash commits nothing twice, and a crash between two writes is finished by the replay.
A gold table fed by several topics is written by several queries of this driver: each holds
the table's write lock (streaming/gold/maintain.py) from recompute to MERGE.

Every commit of a batch carries `{"headwater_batch": "<query>:<batch id>"}` as its Delta
userMetadata, so a reader of the logs can tell which gold commit made a silver row visible
(streaming/visibility.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.types import StructType

from streaming.batches import start_foreach_batch
from streaming.bronze import LAYER as BRONZE
from streaming.bronze import PARTITION_COLUMN, kafka_stream
from streaming.config import Settings, Source
from streaming.gold.definitions import GoldTable, key_columns, with_keys
from streaming.gold.maintain import GoldBatchWriter
from streaming.idempotence import append_exactly_once
from streaming.silver.cdc import CdcBatchWriter
from streaming.silver.events import EventBatchWriter
from streaming.silver.streams import cdc_contract, event_contract
from streaming.visibility import BATCH_TAG

log = logging.getLogger(__name__)

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
BRONZE_RECORD = ("topic", "partition", "offset")  # what identifies a Kafka record in bronze


def query_name(source: Source) -> str:
    """The name of the fused query of `source` (what progress rows and the UI show)."""
    return f"fused_{source.table_name}"


def batch_tag(query: str, batch_id: int) -> str:
    """The userMetadata every commit of batch `batch_id` of `query` carries."""
    return json.dumps({BATCH_TAG: f"{query}:{batch_id}"})


class FusedBatchWriter:
    """The foreachBatch function of one topic's fused query."""

    def __init__(self, settings: Settings, source: Source, golds: Sequence[GoldTable]) -> None:
        self.name = query_name(source)
        self.bronze_path = settings.table_path(BRONZE, source.table_name)
        # The batch ids are the bronze checkpoint's, which the layered bronze query shares:
        # app ids of the fused writers' own, so no layered writer's idempotency record
        # (Delta's txn per app id) is taken for theirs.
        self.app_id = f"headwater-fused-{source.table_name}"
        self.golds = [(GoldBatchWriter(settings, table), table) for table in golds]
        self._touched: dict[str, tuple[list[Row], StructType]] = {}
        events, cdc = event_contract(settings, source), cdc_contract(settings, source)
        self.silver: EventBatchWriter | CdcBatchWriter | None = None
        if events is not None:
            self.silver = EventBatchWriter(settings, source, events, self._note, self.app_id)
        elif cdc is not None:
            self.silver = CdcBatchWriter(settings, source, cdc, self._note, self.app_id)

    def _note(self, silver_table: str, rows: DataFrame) -> None:
        """Keep the gold keys the batch's new rows of `silver_table` touch, per gold table
        (a few hundred keys at most per batch, collected: a local relation for the recompute's
        join, no cached frame to release)."""
        for _, table in self.golds:
            for source in table.sources:
                if source.table == silver_table:
                    keys = with_keys(rows, source).select(*key_columns(source)).distinct()
                    touched = self._touched.setdefault(table.name, ([], keys.schema))
                    touched[0].extend(keys.collect())

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession  # the query's own session: its conf and views are its own
        spark.conf.set(USER_METADATA, batch_tag(self.name, batch_id))
        # This thread's jobs run in the query's own scheduler pool (FAIR between pools).
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", self.name)
        raw = batch.localCheckpoint(eager=False)  # Kafka is read once, by the bronze append
        self._touched = {}
        started = time.monotonic()
        try:
            append_exactly_once(
                raw,
                self.bronze_path,
                PARTITION_COLUMN,
                f"{self.app_id}-bronze",
                batch_id,
                BRONZE_RECORD,
            )
            bronze = time.monotonic()
            if self.silver is not None:
                self.silver(raw, batch_id)
            silver = time.monotonic()
            self._write_gold(spark)
            log.debug(
                "batch %d of %s: bronze %.0f ms, silver %.0f ms, gold %.0f ms",
                batch_id,
                self.name,
                (bronze - started) * 1000,
                (silver - bronze) * 1000,
                (time.monotonic() - silver) * 1000,
            )
        finally:
            raw.unpersist()
            self._touched = {}
            spark.conf.unset(USER_METADATA)

    def _write_gold(self, spark: SparkSession) -> None:
        """Recompute and MERGE the touched keys of every gold table the batch fed."""
        for writer, table in self.golds:
            rows, schema = self._touched.get(table.name, ([], None))
            if rows:
                writer.apply(spark, spark.createDataFrame(rows, schema).distinct())


def fused_gold_tables(
    settings: Settings, source: Source, golds: Sequence[GoldTable]
) -> list[GoldTable]:
    """The gold tables among `golds` that read one of `source`'s silver tables."""
    events, cdc = event_contract(settings, source), cdc_contract(settings, source)
    silver: set[str] = set()
    if events is not None:
        silver.add(f"silver.{events.silver_table}")
    if cdc is not None:
        silver.add(f"silver.{cdc.silver_table}_changes")
    return [t for t in golds if any(s.table in silver for s in t.sources)]


def start_fused(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    golds: Sequence[GoldTable],
    *,
    available_now: bool = False,
) -> StreamingQuery:
    """Start the fused query of `source`, writing bronze, its silver tables and those of
    `golds` it feeds (the tables exist: see runner.prepare_tables); returns the running
    query."""
    return start_foreach_batch(
        kafka_stream(spark, settings, source),
        query_name(source),
        FusedBatchWriter(settings, source, fused_gold_tables(settings, source, golds)),
        settings.checkpoint_path(BRONZE, source.table_name),
        trigger_interval=settings.pipeline.bronze.trigger_interval,
        available_now=available_now,
    )
