"""The fused topology: one query per Kafka topic writes bronze and silver in each micro-batch.

The batch's Kafka records are appended to bronze; then the source's silver writer runs on
the same rows (an event topic: silver, quarantine, duplicates; a CDC topic: the changes,
current state and history). No silver row waits for a trigger of its own or for bronze to
be re-read as a Delta stream.

Gold follows silver in both topologies: one query per gold table reads the new rows of its
silver tables as Delta streams, recomputes the keys they touch and MERGEs them
(streaming/gold/maintain.py). It runs beside the fused queries, in its own scheduler pool, so
a Kafka batch never waits for a gold MERGE, and a gold batch takes in every silver commit
made since the last one (the keys of several Kafka batches in one MERGE). Its checkpoint is
the same in both topologies.

Exactly once: the query's checkpoint is bronze's (the Kafka offsets carry over between the
topologies); each write is idempotent on its own (bronze and silver append once per
(writer, batch id)), so a batch replayed after a crash commits nothing twice, and a crash
between two writes is finished by the replay. Gold is exact by its own checkpoint and its
idempotent MERGE.
"""

from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from streaming import plan
from streaming.batches import start_foreach_batch
from streaming.bronze import LAYER as BRONZE
from streaming.bronze import PARTITION_COLUMN, kafka_stream
from streaming.config import Settings, Source
from streaming.idempotence import append_exactly_once
from streaming.silver.cdc import CdcBatchWriter
from streaming.silver.events import EventBatchWriter
from streaming.silver.streams import cdc_contract, event_contract

log = logging.getLogger(__name__)

BRONZE_RECORD = ("topic", "partition", "offset")  # what identifies a Kafka record in bronze


def query_name(source: Source) -> str:
    """The name of the fused query of `source` (what progress rows and the UI show)."""
    return plan.query_name(plan.FUSED, source.table_name)


class FusedBatchWriter:
    """The foreachBatch function of one topic's fused query."""

    def __init__(self, settings: Settings, source: Source) -> None:
        self.name = query_name(source)
        self.bronze_path = settings.table_path(BRONZE, source.table_name)
        # The batch ids are the bronze checkpoint's, which the layered bronze query shares:
        # app ids of the fused writers' own, so no layered writer's idempotency record
        # (Delta's txn per app id) is taken for theirs.
        self.app_id = f"headwater-fused-{source.table_name}"
        events, cdc = event_contract(settings, source), cdc_contract(settings, source)
        self.silver: EventBatchWriter | CdcBatchWriter | None = None
        if events is not None:
            self.silver = EventBatchWriter(settings, source, events, self.app_id)
        elif cdc is not None:
            self.silver = CdcBatchWriter(settings, source, cdc, self.app_id)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # This thread's jobs run in the query's own scheduler pool (FAIR between pools).
        batch.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", self.name)
        raw = batch.localCheckpoint(eager=False)  # Kafka is read once, by the bronze append
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
            log.debug(
                "batch %d of %s: bronze %.0f ms, silver %.0f ms",
                batch_id,
                self.name,
                (bronze - started) * 1000,
                (time.monotonic() - bronze) * 1000,
            )
        finally:
            raw.unpersist()


def start_fused(
    spark: SparkSession, settings: Settings, source: Source, *, available_now: bool = False
) -> StreamingQuery:
    """Start the fused query of `source`, writing bronze and its silver tables (the tables
    exist: see runner.prepare_tables); returns the running query."""
    return start_foreach_batch(
        kafka_stream(spark, settings, source),
        query_name(source),
        FusedBatchWriter(settings, source),
        settings.checkpoint_path(BRONZE, source.table_name),
        trigger_interval=settings.pipeline.bronze.trigger_interval,
        available_now=available_now,
    )
