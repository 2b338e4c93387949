"""Materialization metadata of a table: its Delta state and how its stream ran."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from streaming.config import Settings
from streaming.progress import LAYER as OPS
from streaming.progress import TABLE as PROGRESS
from streaming.tables import read_delta


def delta_metadata(spark: SparkSession, path: str) -> dict[str, Any]:
    """Delta version, files, size and rows of the table at `path` (empty when it is absent)."""
    from delta.tables import DeltaTable

    if read_delta(spark, path) is None:
        return {"path": dg.MetadataValue.path(path)}
    table = DeltaTable.forPath(spark, path)
    detail = table.detail().first()
    version = table.history(1).select("version").first()
    return {
        "path": dg.MetadataValue.path(path),
        "delta_version": dg.MetadataValue.int(int(version.version) if version else 0),
        "files": dg.MetadataValue.int(int(detail.numFiles) if detail else 0),
        "size_bytes": dg.MetadataValue.int(int(detail.sizeInBytes) if detail else 0),
        "rows_total": dg.MetadataValue.int(table.toDF().count()),
    }


def stream_metadata(
    spark: SparkSession, settings: Settings, query: str, since: datetime
) -> dict[str, Any]:
    """How stream `query` ran since `since`, from ops.stream_progress: batches, rows, batch
    durations, input rate and the Kafka lag (offsets behind latest) at its last batch."""
    progress = read_delta(spark, settings.table_path(OPS, PROGRESS))
    if progress is None:
        return {}
    batches = progress.where((F.col("query_name") == query) & (F.col("recorded_at") >= since))
    stats = batches.agg(
        F.count("*").alias("batches"),
        F.sum("num_input_rows").alias("rows"),
        F.max("batch_duration_ms").alias("max_ms"),
        F.avg("batch_duration_ms").alias("avg_ms"),
        F.avg("input_rows_per_second").alias("input_rate"),
        F.max_by("offsets_behind_latest", "batch_id").alias("lag"),
    ).first()
    if stats is None or not stats.batches:
        return {"batches": dg.MetadataValue.int(0)}
    out: dict[str, Any] = {
        "batches": dg.MetadataValue.int(int(stats.batches)),
        "rows_read": dg.MetadataValue.int(int(stats.rows or 0)),
        "batch_duration_ms_max": dg.MetadataValue.int(int(stats.max_ms or 0)),
        "batch_duration_ms_avg": dg.MetadataValue.float(float(stats.avg_ms or 0.0)),
        "input_rows_per_second": dg.MetadataValue.float(float(stats.input_rate or 0.0)),
    }
    if stats.lag is not None:
        out["offsets_behind_latest"] = dg.MetadataValue.int(int(stats.lag))
    return out
