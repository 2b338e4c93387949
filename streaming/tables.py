"""Reading the lake's tables by name, through the one model of the pipeline."""

from __future__ import annotations

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from streaming.config import Settings

_NO_TABLE_YET = {"PATH_NOT_FOUND", "DELTA_TABLE_NOT_FOUND", "DELTA_MISSING_DELTA_TABLE"}


def read_delta(spark: SparkSession, path: str) -> DataFrame | None:
    """The Delta table at `path` as of its latest commit, or None when there is none yet.

    Reads always go through Delta's log, so another process's fresh commits are seen
    (DeltaTable.isDeltaTable may answer from a stale cached log).
    """
    try:
        return spark.read.format("delta").load(path)
    except AnalysisException as exc:
        if (exc.getCondition() or "") in _NO_TABLE_YET:
            return None
        raise


def read_table(spark: SparkSession, settings: Settings, qualified: str) -> DataFrame | None:
    """Table `<layer>.<table>` (e.g. 'bronze.shop_orders'), or None when it does not exist yet."""
    return read_delta(spark, settings.table_path_by_name(qualified))


def ensure_delta_table(
    spark: SparkSession, path: str, schema: StructType, partition_by: str | None = None
) -> None:
    """Create an empty Delta table at `path` unless one exists, so readers (a downstream
    stream, Dagster, a notebook) find it before the first batch lands."""
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(partition_by)
    builder.execute()


def append_once(
    rows: DataFrame, path: str, partition_by: str | None, app_id: str, batch_id: int
) -> None:
    """Append `rows` to the Delta table at `path` once per (app_id, batch_id): Delta skips a
    replayed micro-batch's write (txnAppId/txnVersion). New columns (a new contract version)
    are merged into the table's schema."""
    writer = rows.write.format("delta").mode("append")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    (
        writer.option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .option("mergeSchema", "true")
        .save(path)
    )
