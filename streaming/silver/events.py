"""bronze.<topic> -> silver.<entity>, quarantine.<topic> and duplicates.<topic>.

Every bronze record of an event topic ends in exactly one of the three:
- silver: valid by its contract version, the first record with its event id;
- quarantine: failed parsing or an error-level rule, with every failed rule and the Kafka
  coordinates (and, when conf says so, a copy on a dead-letter Kafka topic);
- duplicates: valid, but an earlier record (lower Kafka offset) carried the same event id.

Each micro-batch is written by `EventBatchWriter` (foreachBatch). Its Delta writes carry
txnAppId/txnVersion, so a batch replayed after a crash commits nothing twice; and the
duplicate test compares Kafka coordinates, so a replay classifies every record the same way.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from streaming.config import Settings, Source
from streaming.contracts.model import Contract
from streaming.contracts.spark import ERRORS, VERSION, WARNINGS, compile_contract, silver_schema
from streaming.idempotence import append_exactly_once
from streaming.kafka_client import spark_kafka_options
from streaming.tables import read_delta

log = logging.getLogger(__name__)

SILVER, QUARANTINE, DUPLICATES = "silver", "quarantine", "duplicates"
DUPLICATE = "_duplicate"  # a valid row's class within a batch: a copy of an earlier record
_EXISTING = "_existing"  # a row of the table, not of the batch, while classifying
EVENT_DATE = "event_date"
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")
RECORD = KAFKA_COLUMNS[:3]  # what identifies a Kafka record
HORIZON = timedelta(hours=24)


def _coordinates() -> list[Column]:
    return [
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("kafka_timestamp"),
    ]


def silver_rows(checked: DataFrame, contract: Contract) -> DataFrame:
    """Valid checked records as silver rows: contract fields, event date, Kafka coordinates."""
    fields = [F.col(f.name) for f in silver_schema(contract).fields]
    return checked.where(F.size(ERRORS) == 0).select(
        *fields,
        F.to_date(F.col(contract.fields.event_time)).alias(EVENT_DATE),
        *_coordinates(),
        F.col("ingest_time"),
        F.col(WARNINGS).alias("dq_warnings"),
    )


def quarantine_rows(checked: DataFrame) -> DataFrame:
    """Checked records that failed: raw key and value, every failed rule, Kafka coordinates."""
    return checked.where(F.size(ERRORS) > 0).select(
        *_coordinates(),
        F.col("key"),
        F.col("value"),
        F.col("headers"),
        F.col(VERSION).alias("schema_version"),
        F.col(ERRORS).alias("errors"),
        F.transform(F.col(ERRORS), lambda e: e["message"]).alias("reasons"),
        F.col("ingest_time"),
        F.col("ingest_date"),
    )


def first_per_id(rows: DataFrame, id_column: str) -> tuple[DataFrame, DataFrame]:
    """(the first row of each id by Kafka partition and offset, the later ones)."""
    order = Window.partitionBy(id_column).orderBy("kafka_partition", "kafka_offset")
    ranked = rows.withColumn("_rank", F.row_number().over(order))
    return ranked.where("_rank = 1").drop("_rank"), ranked.where("_rank > 1").drop("_rank")


def duplicate_rows(rows: DataFrame, id_column: str) -> DataFrame:
    """Duplicates as recorded in duplicates.<topic>: the id and where the copy was in Kafka."""
    return rows.select(
        F.col(id_column).alias("event_id"),
        *[F.col(c) for c in KAFKA_COLUMNS],
        F.col("ingest_time"),
        F.to_date("ingest_time").alias("ingest_date"),
    )


def classify(rows: DataFrame, existing: DataFrame | None, id_column: str) -> DataFrame:
    """The batch's valid `rows`, each marked once (column DUPLICATE): a row is a copy when an
    earlier row of the batch (by Kafka partition and offset) has its id, or when `existing`
    (the table's rows that might hold it) has its id from another Kafka record. A row
    `existing` holds from the very same coordinates is this batch, replayed: not a copy.

    One pass over one shuffle: the batch's ids, broadcast, pick the few existing rows that
    matter, and windows over the batch and those rows decide. The result is kept, and cut from
    its lineage, by the first job that reads it (the caller's write of the new rows reads all
    of it); the caller unpersists it.
    """
    ours = rows.withColumn(_EXISTING, F.lit(False))
    if existing is not None:
        ids = F.broadcast(rows.select(F.col(id_column).alias("_id")))
        theirs = (
            existing.select(id_column, *RECORD)
            .join(ids, F.col(id_column) == F.col("_id"), "left_semi")
            .withColumn(_EXISTING, F.lit(True))
        )
        ours = ours.unionByName(theirs, allowMissingColumns=True)
    same_record = Window.partitionBy(id_column, *RECORD)
    same_id = Window.partitionBy(id_column)
    batch_order = same_id.orderBy(_EXISTING, "kafka_partition", "kafka_offset")
    # An existing row a batch row shares coordinates with is that record, written before.
    replayed = F.max(~F.col(_EXISTING)).over(same_record)
    marked = ours.withColumn("_other", F.col(_EXISTING) & ~replayed).withColumn(
        "_held", F.max("_other").over(same_id)
    )
    return (
        marked.withColumn("_rank", F.row_number().over(batch_order))
        .where(~F.col(_EXISTING))
        .select(*rows.columns, ((F.col("_rank") > 1) | F.col("_held")).alias(DUPLICATE))
        .localCheckpoint(eager=False)
    )


def append_duplicates(
    classified: DataFrame, id_column: str, path: str, app_id: str, batch_id: int
) -> None:
    """Record the classified copies in duplicates.<topic>; a batch without any commits nothing."""
    dups = classified.where(F.col(DUPLICATE))
    if not dups.isEmpty():
        append_exactly_once(
            duplicate_rows(dups, id_column),
            path,
            "ingest_date",
            f"{app_id}-duplicates",
            batch_id,
            RECORD,
        )


def append_quarantine(bad: DataFrame, path: str, app_id: str, batch_id: int) -> None:
    """Record a batch's quarantined records in quarantine.<topic>, once."""
    append_exactly_once(bad, path, "ingest_date", f"{app_id}-quarantine", batch_id, RECORD)


class EventBatchWriter:
    """The foreachBatch function of one event topic's silver stream."""

    def __init__(
        self,
        settings: Settings,
        source: Source,
        contract: Contract,
        app_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.contract = contract
        self.compiled = compile_contract(contract)
        self.id_column = contract.fields.id
        self.silver_path = settings.table_path(SILVER, contract.silver_table)
        self.quarantine_path = settings.table_path(QUARANTINE, source.table_name)
        self.duplicates_path = settings.table_path(DUPLICATES, source.table_name)
        # One writer per checkpoint: an app id per checkpoint makes its replays idempotent.
        self.app_id = app_id or f"headwater-{SILVER}-{source.table_name}"

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        # Computed once and cut from its lineage: the contract's rules make a large plan,
        # which every later step would otherwise analyse again. The batch is read once, by
        # the summary below, which keeps the checked rows as it goes (Spark counts every read
        # of the batch in the progress's numInputRows).
        checked = self.compiled.apply(batch).localCheckpoint(eager=False)
        # One job for what the batch holds: its rows, the failed ones and the valid rows'
        # event dates (each further action is planned, code-generated and run on its own).
        valid_date = F.when(F.size(ERRORS) == 0, F.to_date(F.col(self.contract.fields.event_time)))
        found = checked.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when(F.size(ERRORS) > 0, 1)).alias("failed"),
            F.min(valid_date).alias("lo"),
            F.max(valid_date).alias("hi"),
        ).first()
        if found is None or found.rows == 0:
            checked.unpersist()
            return
        try:
            failed = found.failed
            if failed < found.rows:
                self._write_valid(spark, checked, found.lo, found.hi, batch_id)
            if failed:
                bad = quarantine_rows(checked)
                append_quarantine(bad, self.quarantine_path, self.app_id, batch_id)
                dead_letter = self.settings.pipeline.silver.dead_letter_topic(self.source.topic)
                if dead_letter:
                    self._send_dead_letters(bad, dead_letter)
        finally:
            checked.unpersist()

    def _write_valid(
        self,
        spark: SparkSession,
        checked: DataFrame,
        lo: date | None,
        hi: date | None,
        batch_id: int,
    ) -> None:
        """Valid rows: the first of each id to silver, the others to duplicates. Each row is
        classified once, and a batch without duplicates commits nothing to them."""
        valid = silver_rows(checked, self.contract)
        classified = classify(valid, self._candidates(spark, lo, hi), self.id_column)
        try:
            new = classified.where(~F.col(DUPLICATE)).drop(DUPLICATE)
            append_exactly_once(
                new, self.silver_path, EVENT_DATE, f"{self.app_id}-rows", batch_id, RECORD
            )
            append_duplicates(
                classified, self.id_column, self.duplicates_path, self.app_id, batch_id
            )
        finally:
            classified.unpersist()

    def _candidates(
        self, spark: SparkSession, lo: date | None, hi: date | None
    ) -> DataFrame | None:
        """The silver rows an earlier copy of the batch's events could be in, given the valid
        rows' earliest and latest event dates; None when there are none."""
        silver = read_delta(spark, self.silver_path)
        if silver is None or lo is None or hi is None:
            return None
        # The horizon: an earlier copy within a day either side of the batch's event dates.
        return silver.where(F.col(EVENT_DATE).between(F.lit(lo - HORIZON), F.lit(hi + HORIZON)))

    def _send_dead_letters(self, bad: DataFrame, topic: str) -> None:
        """Copy quarantined records to a dead-letter topic (at least once: Kafka's sink is
        not transactional; quarantine.<topic> is the exact record)."""
        (
            bad.select(
                F.col("key"),
                F.col("value"),
                F.array(
                    F.struct(
                        F.lit("headwater-reasons").alias("key"),
                        F.to_json("reasons").cast("binary").alias("value"),
                    ),
                    F.struct(
                        F.lit("headwater-source").alias("key"),
                        F.concat_ws(":", "kafka_topic", "kafka_partition", "kafka_offset")
                        .cast("binary")
                        .alias("value"),
                    ),
                ).alias("headers"),
            )
            .write.format("kafka")
            .options(**spark_kafka_options(self.settings.profile.kafka))
            .option("topic", topic)
            .save()
        )
