"""Switching a pipeline between the fused and the layered topology loses and doubles nothing:
each switch drains the other topology first, and layered silver restarts where fused left it."""

from __future__ import annotations

from collections import Counter

import pytest
from pyspark.sql import SparkSession

from streaming.config import Settings, Topology
from streaming.runner import run_streams
from streaming.topology import last_topology
from tests.helpers import produce_shop
from tests.integration.test_silver_events import coordinates, oracle

pytestmark = pytest.mark.integration


def in_topology(settings: Settings, topology: Topology) -> Settings:
    return settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"topology": topology})}
    )


def test_switching_topologies_back_and_forth_keeps_every_record_once(
    spark: SparkSession, pipeline: Settings
) -> None:
    layered, fused = in_topology(pipeline, "layered"), in_topology(pipeline, "fused")
    orders, payments = pipeline.pipeline.sources[0], pipeline.pipeline.sources[1]

    sent = produce_shop(pipeline, 500, seed=31, faults="all")
    # Layered, bronze alone: silver is behind bronze when fused takes over.
    run_streams(spark, layered, available_now=True, layers=["bronze"])
    sent += produce_shop(pipeline, 400, seed=32, faults="all")
    run_streams(spark, fused, available_now=True)
    assert last_topology(pipeline, orders) == "fused"
    # Back to layered: its silver checkpoint is behind what fused wrote; it must not redo it.
    sent += produce_shop(pipeline, 400, seed=33, faults="all")
    run_streams(spark, layered, available_now=True)
    assert last_topology(pipeline, orders) == "layered"
    sent += produce_shop(pipeline, 300, seed=31, faults="all")  # copies of the first run's events
    run_streams(spark, layered, available_now=True)

    expected_silver, expected_quarantine, expected_duplicates = oracle(sent, orders.topic)
    silver = coordinates(spark, pipeline.table_path("silver", "orders"), "event_id")
    silver += coordinates(spark, pipeline.table_path("silver", "payments"), "event_id")
    assert silver == Counter((*k, v) for k, v in expected_silver.items())
    quarantined = Counter[tuple[str, int, int]]()
    duplicates = Counter[tuple[str, int, int]]()
    bronze = Counter[tuple[str, int, int]]()
    for source in (orders, payments):
        quarantined += coordinates(spark, pipeline.table_path("quarantine", source.table_name))
        duplicates += coordinates(spark, pipeline.table_path("duplicates", source.table_name))
        table = spark.read.format("delta").load(pipeline.table_path("bronze", source.table_name))
        bronze += Counter(tuple(r) for r in table.select("topic", "partition", "offset").collect())
    assert quarantined == Counter(expected_quarantine)
    assert duplicates == Counter(expected_duplicates)
    assert bronze == Counter((d.topic, d.partition, d.offset) for d in sent)
