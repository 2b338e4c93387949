"""Reading the lake's tables by name, through the one model of the pipeline."""

from __future__ import annotations

from typing import Any

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


def hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """(Hadoop's FileSystem of `path`, its Hadoop Path), for any Hadoop-compatible location."""
    jvm: Any = spark._jvm
    location = jvm.org.apache.hadoop.fs.Path(path)
    return location.getFileSystem(spark._jsc.hadoopConfiguration()), location  # type: ignore[attr-defined]


def has_path(spark: SparkSession, path: str) -> bool:
    """Whether `path` (any Hadoop-compatible location) exists."""
    fs, location = hadoop_path(spark, path)
    return bool(fs.exists(location))


def has_delta_log(spark: SparkSession, path: str) -> bool:
    """Whether `path` (any Hadoop-compatible location) holds a Delta log with a commit."""
    fs, log = hadoop_path(spark, path.rstrip("/") + "/_delta_log")
    if not fs.exists(log):
        return False
    return any(status.getPath().getName().endswith(".json") for status in fs.listStatus(log))


def all_delta_tables_exist(spark: SparkSession, paths: list[str]) -> bool:
    """Whether every path holds a Delta table: a restarted stream skips working out the
    schemas of tables it would only create (seconds of Spark analysis for a contract)."""
    return all(has_delta_log(spark, path) for path in paths)


def ensure_delta_table(
    spark: SparkSession, path: str, schema: StructType, partition_by: str | None = None
) -> None:
    """Create an empty Delta table at `path` unless one exists, so readers (a downstream
    stream, Dagster, a notebook) find it before the first batch lands.

    An existing table is recognised by its log directory alone: asking Delta would load the
    table's snapshot (about a second each, and every stream start asks for several)."""
    from delta.tables import DeltaTable

    if has_delta_log(spark, path):
        return

    # Delta compares the location with the one it qualifies: 'file:///x' (a URI as a profile
    # writes it) and 'file:/x' (Hadoop's form) would be two locations to it.
    fs, location = hadoop_path(spark, path)
    qualified = str(fs.makeQualified(location).toString())
    builder = DeltaTable.createIfNotExists(spark).location(qualified).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(partition_by)
    builder.execute()


def ensure_delta_tables(
    spark: SparkSession, tables: list[tuple[str, StructType, str | None]]
) -> None:
    """`ensure_delta_table` for each (path, schema, partition column), a few at a time: a
    stream's start creates up to six tables, and each creation mostly waits on its commit."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="create-table") as pool:
        for done in [pool.submit(ensure_delta_table, spark, *table) for table in tables]:
            done.result()


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
