"""bronze.<cdc topic> -> silver.<table>_changes, silver.<table> (SCD1), silver.<table>_history (SCD2).

Debezium change events arrive out of order and duplicated; the database's order is
`source.lsn`. So every valid change is first appended, once per (key, lsn), to
`silver.<table>_changes`; then, for the keys a batch touched, the current row and the whole
version history are recomputed from all their changes in lsn order and MERGEd. A late, older
change therefore lands in its place in history and never overwrites a newer state; a replayed
batch recomputes the same rows. Tombstones (null values after a delete) are expected and
skipped; unreadable or rule-breaking changes go to quarantine.<topic>.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from streaming import plan
from streaming.config import Settings, Source
from streaming.contracts.model import CdcContract
from streaming.contracts.spark import (
    CORRUPT,
    ERRORS,
    JSON_OPTIONS,
    REASONS_TYPE,
    VERSION,
    WARNINGS,
    raw_schema,
    reasons_of,
    spark_type,
    text_of,
    version_rules,
    with_corrupt,
)
from streaming.idempotence import append_exactly_once
from streaming.silver.events import (
    DUPLICATE,
    DUPLICATES,
    QUARANTINE,
    RECORD,
    SILVER,
    append_duplicates,
    append_quarantine,
    classify,
    quarantine_rows,
)
from streaming.tables import read_delta

OPS = ("c", "u", "d", "r")
CHANGE_KEY = "_change_key"  # key and lsn: what makes a change unique


def row_schema(contract: CdcContract) -> StructType:
    return StructType(
        [StructField(n, spark_type(f), True) for n, f in contract.row.properties.items()]
    )


def _envelope(row: StructType) -> StructType:
    source = StructType(
        [
            StructField("ts_ms", LongType()),
            StructField("txId", LongType()),
            StructField("lsn", LongType()),
            StructField("snapshot", StringType()),
        ]
    )
    return StructType(
        [
            StructField("before", row),
            StructField("after", row),
            StructField("source", source),
            StructField("op", StringType()),
            StructField("ts_ms", LongType()),
        ]
    )


def parse_changes(records: DataFrame, contract: CdcContract) -> DataFrame:
    """Bronze records plus op, lsn, changed_at, the row image, `_tombstone` and `_errors`."""
    row = row_schema(contract)
    text = F.col("value").cast("string")
    typed = F.from_json(text, with_corrupt(_envelope(row)), JSON_OPTIONS)
    raw = F.from_json(text, with_corrupt(_envelope(raw_schema(row))), JSON_OPTIONS)
    parsed = records.withColumn("_t", typed).withColumn("_r", raw)
    t, r = F.col("_t"), F.col("_r")
    op = t["op"]
    image_t = F.when(op == "d", t["before"]).otherwise(t["after"])
    image_r = F.when(op == "d", r["before"]).otherwise(r["after"])
    tombstone = F.col("value").isNull()
    unreadable = ~F.is_valid_utf8(text) | t.isNull() | t[CORRUPT].isNotNull()
    record_level = reasons_of(
        [
            (
                ~tombstone & ~F.is_valid_utf8(text),
                "record.utf8",
                F.lit("record: the value is not valid UTF-8"),
            ),
            (
                ~tombstone & F.is_valid_utf8(text) & (t.isNull() | t[CORRUPT].isNotNull()),
                "record.json",
                F.lit("record: the value is not a Debezium JSON envelope"),
            ),
            (
                ~tombstone & ~unreadable & ~F.coalesce(op.isin(list(OPS)), F.lit(False)),
                "record.op",
                text_of("op: ", F.coalesce(r["op"], F.lit("null")), " is not one of c, u, d, r"),
            ),
            (
                ~tombstone & ~unreadable & t["source"]["lsn"].isNull(),
                "source.lsn.required",
                F.lit("source.lsn: required"),
            ),
            (
                ~tombstone & ~unreadable & op.isin(list(OPS)) & image_r.isNull(),
                "record.image",
                text_of(
                    "op ",
                    op,
                    ": the ",
                    F.when(op == "d", "before").otherwise("after"),
                    " image is missing",
                ),
            ),
        ]
    )
    image_text = F.when(op == "d", F.get_json_object(text, "$.before")).otherwise(
        F.get_json_object(text, "$.after")
    )
    rules = version_rules(contract.row, 1, image_r, image_t, contract.criticality, image_text)
    field_errors = reasons_of(
        [(rule.violated, rule.id, rule.message) for rule in rules if rule.criticality == "error"]
    )
    field_warnings = reasons_of(
        [(rule.violated, rule.id, rule.message) for rule in rules if rule.criticality == "warn"]
    )
    readable = F.size(record_level) == 0
    return (
        parsed.select(
            "*",
            op.alias("op"),
            t["source"]["lsn"].alias("lsn"),
            F.timestamp_millis(t["source"]["ts_ms"]).alias("changed_at"),
            t["source"]["txId"].alias("tx_id"),
            *[image_t[f.name].alias(f.name) for f in row.fields],
        )
        .withColumn("_tombstone", tombstone)
        .withColumn(
            ERRORS,
            F.when(tombstone, F.array().cast(REASONS_TYPE))
            .when(readable, field_errors)
            .otherwise(record_level),
        )
        .withColumn(
            WARNINGS,
            F.when(readable & ~tombstone, field_warnings).otherwise(F.array().cast(REASONS_TYPE)),
        )
        .withColumn(VERSION, F.lit(None).cast("int"))
        .drop("_t", "_r")
    )


def change_rows(parsed: DataFrame, contract: CdcContract) -> DataFrame:
    """Valid changes (no tombstones): key, op, lsn, when, the row image, Kafka coordinates."""
    fields = [F.col(n) for n in contract.row.properties]
    return parsed.where(~F.col("_tombstone") & (F.size(ERRORS) == 0)).select(
        F.concat_ws("@", F.col(contract.key), F.col("lsn").cast("string")).alias(CHANGE_KEY),
        *fields,
        F.col("op"),
        F.col("lsn"),
        F.col("changed_at"),
        F.col("tx_id"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("kafka_timestamp"),
        F.col("ingest_time"),
    )


def history_rows(changes: DataFrame, contract: CdcContract) -> DataFrame:
    """SCD2 from all changes of some keys: one row per version in lsn order, valid_from/valid_to,
    is_current; a delete closes the version before it and adds none."""
    by_key = Window.partitionBy(contract.key).orderBy("lsn")
    ordered = changes.withColumn("valid_to", F.lead("changed_at").over(by_key)).withColumn(
        "_next_op", F.lead("op").over(by_key)
    )
    return ordered.where(F.col("op") != "d").select(
        *[F.col(n) for n in contract.row.properties],
        F.col("lsn"),
        F.col("op"),
        F.col("changed_at").alias("valid_from"),
        F.col("valid_to"),
        F.col("valid_to").isNull().alias("is_current"),
        (F.col("_next_op") == "d").alias("closed_by_delete"),
    )


def current_rows(changes: DataFrame, contract: CdcContract) -> DataFrame:
    """SCD1 source for MERGE: the newest change of each key (deletes included, to remove)."""
    newest = Window.partitionBy(contract.key).orderBy(F.col("lsn").desc())
    latest = changes.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1")
    return latest.select(
        *[F.col(n) for n in contract.row.properties], F.col("lsn"), F.col("op"), F.col("changed_at")
    )


class CdcBatchWriter:
    """The foreachBatch function of one CDC topic's silver stream."""

    def __init__(
        self,
        settings: Settings,
        source: Source,
        contract: CdcContract,
        app_id: str | None = None,
    ) -> None:
        self.contract = contract
        table = contract.silver_table
        self.changes_path = settings.table_path(SILVER, plan.cdc_tables(table).changes)
        self.current_path = settings.table_path(SILVER, table)
        self.history_path = settings.table_path(SILVER, plan.cdc_tables(table).history)
        self.quarantine_path = settings.table_path(QUARANTINE, source.table_name)
        self.duplicates_path = settings.table_path(DUPLICATES, source.table_name)
        # One writer per checkpoint: an app id per checkpoint makes its replays idempotent.
        self.app_id = app_id or f"headwater-{SILVER}-{source.table_name}"

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        # The batch is read once, by the summary below, which keeps the parsed rows as it goes
        # (Spark counts every read in numInputRows).
        parsed = parse_changes(batch, self.contract).localCheckpoint(eager=False)
        try:
            # One job for what the batch holds: rule-breaking records and valid changes.
            found = parsed.agg(
                F.count(F.when(~F.col("_tombstone") & (F.size(ERRORS) > 0), 1)).alias("bad"),
                F.count(F.when(~F.col("_tombstone") & (F.size(ERRORS) == 0), 1)).alias("valid"),
            ).first()
            if found is None:
                return
            if found.bad:
                bad = quarantine_rows(parsed.where(~F.col("_tombstone")))
                append_quarantine(bad, self.quarantine_path, self.app_id, batch_id)
            if found.valid:
                self._apply(spark, change_rows(parsed, self.contract), batch_id)
        finally:
            parsed.unpersist()

    def _apply(self, spark: SparkSession, changes: DataFrame, batch_id: int) -> None:
        """Append the batch's new changes (each row classified once), then recompute the
        current row and history of the keys they touch. Copies of changes already applied go
        to duplicates, and only when there are some."""
        from delta.tables import DeltaTable

        classified = classify(changes, read_delta(spark, self.changes_path), CHANGE_KEY)
        try:
            new = classified.where(~F.col(DUPLICATE)).drop(DUPLICATE)
            append_exactly_once(
                new, self.changes_path, None, f"{self.app_id}-changes", batch_id, RECORD
            )
            append_duplicates(classified, CHANGE_KEY, self.duplicates_path, self.app_id, batch_id)
            if new.isEmpty():
                return  # every change was applied before: current rows and history stand
            key = self.contract.key
            touched = new.select(key).distinct()
            all_changes = read_delta(spark, self.changes_path)
            assert all_changes is not None
            # Every change of the touched keys, read once for both MERGEs.
            affected = all_changes.join(F.broadcast(touched), key, "left_semi").localCheckpoint(
                eager=True
            )
        finally:
            classified.unpersist()
        try:
            # Current state first: it is what readers of silver.<table> wait for.
            columns = [*self.contract.row.properties, "lsn", "changed_at"]
            (
                DeltaTable.forPath(spark, self.current_path)
                .alias("t")
                .merge(current_rows(affected, self.contract).alias("s"), f"t.{key} = s.{key}")
                .whenMatchedDelete(condition="s.op = 'd'")
                .whenMatchedUpdate(set={c: f"s.{c}" for c in columns})
                .whenNotMatchedInsert(
                    condition="s.op != 'd'", values={c: f"s.{c}" for c in columns}
                )
                .execute()
            )
            (
                DeltaTable.forPath(spark, self.history_path)
                .alias("t")
                .merge(
                    history_rows(affected, self.contract).alias("s"),
                    f"t.{key} = s.{key} AND t.lsn = s.lsn",
                )
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            affected.unpersist()
