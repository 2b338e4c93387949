"""Replaying a Kafka topic into `bronze.<table>` without doubling what is already there.

A batch read of the topic from a timestamp or from offsets, shaped exactly as the bronze
stream shapes it, then an insert-only Delta MERGE on the Kafka coordinates (topic, partition,
offset): records bronze holds are not written again, so replaying twice changes nothing. An
insert-only MERGE commits only added files, which the silver streams reading bronze as a Delta
streaming source take as an ordinary append; a MERGE with nothing to insert commits nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from confluent_kafka import Consumer, TopicPartition
from pyspark.sql import DataFrame, SparkSession

from streaming.bronze import BRONZE_SCHEMA, LAYER, PARTITION_COLUMN, to_bronze
from streaming.config import KafkaSettings, Settings, Source
from streaming.errors import HeadwaterError
from streaming.kafka_client import client_config, end_offsets, spark_kafka_options
from streaming.locks import stream_locks
from streaming.tables import ensure_delta_table

log = logging.getLogger(__name__)

MERGE_ATTEMPTS = 5
RETRY_PAUSE_S = 0.5
_KEY = "t.topic = s.topic AND t.partition = s.partition AND t.offset = s.offset"
_T = TypeVar("_T")


class ReplayError(HeadwaterError):
    """A replay was asked for with arguments that cannot work."""


@dataclass(frozen=True)
class ReplayReport:
    """What one replay of a topic into bronze did."""

    topic: str
    table: str
    ranges: dict[int, tuple[int, int]]
    """Per Kafka partition, the offsets read: [first, end)."""
    records_read: int
    inserted: int
    already_present: int
    delta_version: int
    """bronze's version after the replay: the MERGE commit, or the version it already had
    when nothing was new (a MERGE that inserts nothing commits nothing)."""

    @property
    def committed(self) -> bool:
        return self.inserted > 0

    def summary(self) -> str:
        if self.records_read == 0:
            return (
                f"replay {self.topic}: nothing to replay (Kafka holds no records in the asked "
                f"range); {self.table} unchanged at version {self.delta_version}"
            )
        outcome = (
            f"committed as version {self.delta_version}"
            if self.committed
            else f"unchanged at version {self.delta_version}"
        )
        return (
            f"replay {self.topic}: read {self.records_read:,} records, inserted "
            f"{self.inserted:,}, already present {self.already_present:,}; {self.table} {outcome}"
        )


def parse_timestamp(text: str) -> datetime:
    """An ISO-8601 date-time (UTC when it names no zone); ReplayError when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(
            f"'{text}' is not an ISO-8601 date-time: write it like 2026-06-01T08:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_offsets(offsets: str | Mapping[str, Any]) -> dict[int, int]:
    """Offsets per partition from JSON text or a mapping like {"0": 10, "1": 0};
    ReplayError when partitions or offsets are not non-negative integers."""
    if isinstance(offsets, str):
        try:
            offsets = json.loads(offsets)
        except ValueError:
            raise ReplayError(
                f"offsets '{offsets}' are not JSON: write them like '{{\"0\": 10, \"1\": 0}}'"
            ) from None
    if not isinstance(offsets, Mapping) or not offsets:
        raise ReplayError(
            'offsets must be a non-empty mapping of partition to offset, like {"0": 10, "1": 0}'
        )
    result: dict[int, int] = {}
    for partition, offset in offsets.items():
        try:
            p = int(partition)
        except (TypeError, ValueError):
            p = -1
        if p < 0 or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ReplayError(
                f"partition {partition!r}: offset {offset!r} is not allowed; partitions and "
                "offsets are whole numbers from 0"
            )
        result[p] = offset
    return result


def check_start(from_timestamp: datetime | None, from_offsets: Mapping[int, int] | None) -> None:
    """ReplayError unless exactly one of a start timestamp and start offsets is given."""
    if from_timestamp is None and from_offsets is None:
        raise ReplayError(
            "say where the replay starts: give a timestamp (--from-timestamp) or offsets per "
            "partition (--from-offsets)"
        )
    if from_timestamp is not None and from_offsets is not None:
        raise ReplayError(
            "give either a start timestamp or start offsets, not both: the replay has one start"
        )


def replay_topic(
    spark: SparkSession,
    settings: Settings,
    topic: str,
    *,
    from_timestamp: datetime | None = None,
    from_offsets: Mapping[int, int] | None = None,
    until_offsets: Mapping[int, int] | None = None,
    owner: str = "headwater replay",
) -> ReplayReport:
    """Read `topic` from `from_timestamp` (the first record at or after it, per partition) or
    from `from_offsets` (partitions not named are not replayed) up to `until_offsets`
    (exclusive; default: the end of each partition now), and insert into bronze.<table> the
    records it does not hold yet. bronze.<table> is created when missing.

    Silver and gold take the records in at their streams' next run. In the layered topology
    the replay runs beside the streams; in the fused one it needs them stopped (it holds
    every stream's lock while it switches the pipeline to layered, see the code).

    Returns a ReplayReport; a start after the end of the topic reads nothing and says so.
    Raises ConfigError for a topic not in conf, ReplayError for bad arguments, ServiceError when
    Kafka does not answer, StreamBusy when another replay of the topic runs (or, in the fused
    topology, when the pipeline runs).
    """
    check_start(from_timestamp, from_offsets)
    source = settings.pipeline.source(topic)
    kafka = settings.profile.kafka
    ranges = offset_ranges(kafka, source, from_timestamp, from_offsets, until_offsets)
    path = settings.table_path(LAYER, source.table_name)
    table = f"{LAYER}.{source.table_name}"
    locks = [f"replay:{source.topic}"]
    fused = settings.pipeline.topology == "fused"
    if fused:
        from streaming.runner import switch_locks

        locks += switch_locks(settings)
    with stream_locks(settings, locks, owner):
        if fused:
            # In the fused topology silver is written from Kafka's batches, never from
            # bronze's: the pipeline switches to layered first (draining fused), so the next
            # run, in either topology, takes the replayed records from bronze to silver and
            # gold (a fused run drains layered first).
            from streaming.runner import switch_topology

            switch_topology(spark, settings, "layered", stop=threading.Event())
        ensure_delta_table(spark, path, BRONZE_SCHEMA, PARTITION_COLUMN)
        records = read_range(spark, settings, source, ranges)
        read = records.count() if any(end > start for start, end in ranges.values()) else 0
        if read == 0:
            version = _version(spark, path)
            inserted = 0
        else:
            inserted, version = retry_on_conflict(lambda: _merge(spark, path, records), table)
    report = ReplayReport(
        topic=source.topic,
        table=table,
        ranges=ranges,
        records_read=read,
        inserted=inserted,
        already_present=read - inserted,
        delta_version=version,
    )
    log.info("%s", report.summary())
    return report


def offset_ranges(
    kafka: KafkaSettings,
    source: Source,
    from_timestamp: datetime | None,
    from_offsets: Mapping[int, int] | None,
    until_offsets: Mapping[int, int] | None,
) -> dict[int, tuple[int, int]]:
    """[start, end) per partition of the topic, within what Kafka holds now.

    Resolved once, before Spark reads, so every pass over the records sees the same ones.
    """
    high = end_offsets(kafka, source.topic)  # ServiceError when the topic is not in Kafka
    for name, asked in (("from", from_offsets), ("until", until_offsets)):
        unknown = sorted(set(asked or {}) - set(high))
        if unknown:
            raise ReplayError(
                f"{name} offsets name partition {', '.join(map(str, unknown))} of {source.topic},"
                f" which has partitions 0-{max(high)}"
            )
    consumer = Consumer(
        {**client_config(kafka), "group.id": "headwater-replay", "enable.auto.commit": False}
    )
    try:
        low = {
            p: consumer.get_watermark_offsets(TopicPartition(source.topic, p), timeout=10)[0]
            for p in high
        }
        if from_timestamp is not None:
            millis = int(from_timestamp.timestamp() * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(source.topic, p, millis) for p in high], timeout=10
            )
            # -1: no record at or after the timestamp, so nothing to replay there.
            start = {
                tp.partition: high[tp.partition] if tp.offset < 0 else tp.offset for tp in found
            }
        else:
            start = {p: (from_offsets or {}).get(p, high[p]) for p in high}
    finally:
        consumer.close()
    ranges = {}
    for p in sorted(high):
        if start[p] < low[p]:
            log.warning(
                "%s[%d]: offsets %d-%d are no longer in Kafka (retention); replaying from %d",
                source.topic,
                p,
                start[p],
                low[p] - 1,
                low[p],
            )
        first = min(max(start[p], low[p]), high[p])
        end = min((until_offsets or {}).get(p, high[p]), high[p])
        ranges[p] = (first, max(first, end))
    return ranges


def read_range(
    spark: SparkSession, settings: Settings, source: Source, ranges: Mapping[int, tuple[int, int]]
) -> DataFrame:
    """The records of `source.topic` in `ranges`, as bronze rows (the stream's own transform)."""
    starting = {source.topic: {str(p): first for p, (first, _) in ranges.items()}}
    ending = {source.topic: {str(p): end for p, (_, end) in ranges.items()}}
    reader = (
        spark.read.format("kafka")
        .options(**spark_kafka_options(settings.profile.kafka))
        .option("subscribe", source.topic)
        .option("startingOffsets", json.dumps(starting))
        .option("endingOffsets", json.dumps(ending))
        .option("failOnDataLoss", str(settings.pipeline.bronze.fail_on_data_loss).lower())
        .option("includeHeaders", "true")
    )
    return to_bronze(reader.load())


def retry_on_conflict(
    action: Callable[[], _T],
    what: str,
    attempts: int = MERGE_ATTEMPTS,
    pause_s: float = RETRY_PAUSE_S,
) -> _T:
    """`action()`, run again (up to `attempts` times in all, pausing longer each time) when a
    concurrent Delta commit conflicts with it, e.g. the bronze stream appending meanwhile."""
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
    )

    conflicts = (
        ConcurrentAppendException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
    )
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except conflicts as exc:
            if attempt == attempts:
                raise ReplayError(
                    f"{what} kept changing under the replay ({attempts} commits conflicted; "
                    f"last: {type(exc).__name__}): run the replay again"
                ) from None
            log.info("%s: concurrent commit (%s), retry %d", what, type(exc).__name__, attempt)
            time.sleep(pause_s * attempt)  # back off: let the concurrent writer finish
    raise AssertionError("unreachable")


def _merge(spark: SparkSession, path: str, records: DataFrame) -> tuple[int, int]:
    """Insert-only MERGE of `records` into the bronze table at `path`; returns (rows inserted,
    bronze's version after it)."""
    from delta.tables import DeltaTable

    bronze = DeltaTable.forPath(spark, path)
    before = _version(spark, path)
    metrics = (
        bronze.alias("t")
        .merge(records.alias("s"), _KEY)
        .whenNotMatchedInsertAll()
        .execute()
        .first()
    )
    inserted = int(metrics["num_inserted_rows"]) if metrics is not None else 0
    if inserted == 0:
        return 0, before
    # Ours is the newest MERGE since `before`: the replay lock keeps other replays out, and
    # the bronze stream only appends.
    merges = (
        bronze.history()
        .where(f"version > {before} AND operation = 'MERGE'")
        .agg({"version": "max"})
        .first()
    )
    return inserted, int(merges[0]) if merges is not None and merges[0] is not None else before


def _version(spark: SparkSession, path: str) -> int:
    from delta.tables import DeltaTable

    latest = DeltaTable.forPath(spark, path).history(1).first()
    return int(latest["version"]) if latest is not None else 0
