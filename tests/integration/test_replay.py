"""Replaying a topic into bronze over the real broker: what bronze missed lands once, what it
holds is not written again, and the silver stream reading bronze follows the replay."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from devstack.generator.producer import Delivered
from streaming.config import Settings
from streaming.kafka_client import end_offsets
from streaming.replay import ReplayError, replay_topic
from streaming.runner import run_streams
from tests.helpers import bronze_records, expected_records, produce_shop
from tests.integration.test_silver_events import coordinates

pytestmark = pytest.mark.integration


def starting_at(settings: Settings, offsets: dict[str, dict[str, int]]) -> Settings:
    """`settings` whose bronze streams start at `offsets` (Spark's JSON form)."""
    bronze = settings.pipeline.bronze.model_copy(update={"starting_offsets": json.dumps(offsets)})
    pipeline = settings.pipeline.model_copy(update={"bronze": bronze})
    return settings.model_copy(update={"pipeline": pipeline})


def bronze_version(spark: SparkSession, settings: Settings, table: str) -> int:
    latest = DeltaTable.forPath(spark, settings.table_path("bronze", table)).history(1).first()
    assert latest is not None
    return int(latest["version"])


def landed(spark: SparkSession, settings: Settings, table: str) -> Counter[Any]:
    """Kafka coordinates of the rows of silver.orders, quarantine and duplicates of `table`."""
    found = coordinates(spark, settings.table_path("silver", "orders"))
    found += coordinates(spark, settings.table_path("quarantine", table))
    found += coordinates(spark, settings.table_path("duplicates", table))
    return found


# Three stream rounds (bronze, silver, silver again): over 9 minutes on a loaded 2-core machine.
@pytest.mark.timeout(1200)
def test_replay_fills_what_bronze_missed_once_and_silver_follows(
    spark: SparkSession, pipeline: Settings
) -> None:
    orders = pipeline.pipeline.sources[0]
    since = datetime.now(UTC) - timedelta(seconds=1)
    early = produce_shop(pipeline, 100, seed=31, faults="duplicates=0.1,malformed=0.05")
    gap_end = end_offsets(pipeline.profile.kafka, orders.topic)
    late = produce_shop(pipeline, 60, seed=32, faults="duplicates=0.1")
    sent = [d for d in early + late if d.topic == orders.topic]
    missed = [d for d in early if d.topic == orders.topic]
    held = [d for d in late if d.topic == orders.topic]
    assert missed and held

    # The bronze stream started after the early records: bronze misses them, silver too.
    late_start = starting_at(pipeline, {orders.topic: {str(p): o for p, o in gap_end.items()}})
    run_streams(spark, late_start, [orders.topic], available_now=True, layers=["bronze", "silver"])
    assert bronze_records(spark, pipeline) == expected_records(held)
    before = bronze_version(spark, pipeline, orders.table_name)

    report = replay_topic(spark, pipeline, orders.topic, from_timestamp=since)
    assert (report.records_read, report.inserted, report.already_present) == (
        len(sent),
        len(missed),
        len(held),
    )
    assert report.delta_version == before + 1 == bronze_version(spark, pipeline, orders.table_name)
    assert report.ranges == {
        p: (0, end) for p, end in end_offsets(pipeline.profile.kafka, orders.topic).items()
    }
    assert bronze_records(spark, pipeline) == expected_records(sent), "each record exactly once"

    # Again, by offsets this time: everything is already there, so nothing is committed.
    again = replay_topic(spark, pipeline, orders.topic, from_offsets={0: 0, 1: 0, 2: 0})
    assert (again.records_read, again.inserted, again.already_present) == (len(sent), 0, len(sent))
    assert again.delta_version == report.delta_version
    assert bronze_version(spark, pipeline, orders.table_name) == report.delta_version
    assert bronze_records(spark, pipeline) == expected_records(sent)

    # Silver, which had read bronze before the MERGE, reads the replayed records after it.
    run_streams(spark, pipeline, [orders.topic], available_now=True, layers=["silver"])
    assert landed(spark, pipeline, orders.table_name) == Counter(
        (d.topic, d.partition, d.offset) for d in sent
    )


def test_replay_of_a_range_into_a_missing_table_and_from_past_the_end(
    spark: SparkSession, pipeline: Settings
) -> None:
    orders = pipeline.pipeline.sources[0]
    sent = [d for d in produce_shop(pipeline, 80, seed=33) if d.topic == orders.topic]

    with pytest.raises(ReplayError, match="partition 7 of"):
        replay_topic(spark, pipeline, orders.topic, from_offsets={7: 0})

    after_the_end = datetime.now(UTC) + timedelta(hours=1)
    nothing = replay_topic(spark, pipeline, orders.topic, from_timestamp=after_the_end)
    assert (nothing.records_read, nothing.inserted, nothing.delta_version) == (0, 0, 0)
    assert "nothing to replay" in nothing.summary()
    assert bronze_records(spark, pipeline) == Counter(), "bronze was created, empty"

    # Offsets [1, 4) of partition 0; partitions not named are not replayed.
    part = replay_topic(spark, pipeline, orders.topic, from_offsets={0: 1}, until_offsets={0: 4})
    wanted: list[Delivered] = [d for d in sent if d.partition == 0 and 1 <= d.offset < 4]
    assert len(wanted) == 3 and part.inserted == 3 and part.already_present == 0
    assert part.ranges[0] == (1, 4) and part.ranges[1][0] == part.ranges[1][1]
    assert bronze_records(spark, pipeline) == expected_records(wanted)


def test_in_the_fused_topology_a_replay_reaches_silver_at_the_next_run(
    spark: SparkSession, pipeline: Settings
) -> None:
    assert pipeline.pipeline.topology == "fused"
    orders = pipeline.pipeline.sources[0]
    missed = [d for d in produce_shop(pipeline, 80, seed=34) if d.topic == orders.topic]
    gap_end = end_offsets(pipeline.profile.kafka, orders.topic)
    held = [d for d in produce_shop(pipeline, 50, seed=35) if d.topic == orders.topic]
    # The fused pipeline started after the early records: bronze and silver miss them.
    late_start = starting_at(pipeline, {orders.topic: {str(p): o for p, o in gap_end.items()}})
    run_streams(spark, late_start, [orders.topic], available_now=True)
    assert landed(spark, pipeline, orders.table_name) == Counter(
        (d.topic, d.partition, d.offset) for d in held
    )
    report = replay_topic(spark, pipeline, orders.topic, from_offsets={0: 0, 1: 0, 2: 0})
    assert report.inserted == len(missed)
    # Silver is fed from Kafka's batches in the fused topology: the replayed records reach it
    # at the next run, which drains the layered streams the replay switched to first.
    run_streams(spark, pipeline, [orders.topic], available_now=True)
    assert landed(spark, pipeline, orders.table_name) == Counter(
        (d.topic, d.partition, d.offset) for d in missed + held
    )
