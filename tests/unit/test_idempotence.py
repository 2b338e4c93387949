"""Appends once per (writer, batch id), judged by the tail of the table's log or by its rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from streaming.idempotence import TableLog, append_exactly_once, last_committed_batch

pytestmark = pytest.mark.unit
RECORD = ("kafka_topic", "kafka_partition", "kafka_offset")


def batch(spark: SparkSession, offsets: range) -> DataFrame:
    return spark.createDataFrame(
        [("t", 0, o, f"v{o}") for o in offsets],
        "kafka_topic string, kafka_partition int, kafka_offset long, value string",
    )


def offsets(spark: SparkSession, path: Path) -> list[int]:
    rows = spark.read.format("delta").load(str(path)).select("kafka_offset").collect()
    return sorted(r.kafka_offset for r in rows)


def test_a_replayed_batch_commits_nothing_and_the_next_one_commits(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "table")
    assert append_exactly_once(batch(spark, range(0, 3)), path, None, "a", 0, RECORD)
    assert not append_exactly_once(batch(spark, range(0, 3)), path, None, "a", 0, RECORD)
    # Another writer's commits in between do not hide writer a's last batch.
    assert append_exactly_once(batch(spark, range(100, 102)), path, None, "b", 7, RECORD)
    assert append_exactly_once(batch(spark, range(100, 102)), path, None, "b", 8, RECORD)
    assert not append_exactly_once(batch(spark, range(0, 3)), path, None, "a", 0, RECORD)
    assert append_exactly_once(batch(spark, range(3, 5)), path, None, "a", 1, RECORD)
    assert offsets(spark, tmp_path / "table") == [0, 1, 2, 3, 4, 100, 100, 101, 101]
    log = TableLog(spark, path)
    assert log.newest_version() == 3
    assert last_committed_batch(log, "a") == 1
    assert last_committed_batch(log, "b") == 8
    assert last_committed_batch(log, "c") is None


def test_without_its_commits_in_the_log_a_batch_is_judged_by_its_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "table")
    assert append_exactly_once(batch(spark, range(0, 3)), path, None, "a", 0, RECORD)
    # A writer whose commits the log does not show (its app id changed, or log cleanup):
    # the rows of a batch already written are found, new rows are written.
    assert not append_exactly_once(batch(spark, range(0, 3)), path, None, "renamed", 0, RECORD)
    assert append_exactly_once(batch(spark, range(3, 6)), path, None, "renamed", 0, RECORD)
    assert offsets(spark, tmp_path / "table") == [0, 1, 2, 3, 4, 5]
