"""The benchmark's floors (bench/floor.py) against the real broker and Delta: both carry every
Kafka record through bronze, silver and gold exactly once, and the benchmark's measures find
each record's freshness in every layer. It asserts what landed, never how fast."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench import floor
from bench.side import Side, orders
from devstack.generator.producer import produce
from streaming.config import Settings
from streaming.kafka_client import ensure_topics

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("side_name", ["floor", "fused"])
def test_a_floor_carries_every_record_to_gold_once_and_is_measured(
    spark: SparkSession, pipeline: Settings, side_name: str
) -> None:
    source = next(s for s in pipeline.pipeline.sources if s.topic.endswith(".orders"))
    ensure_topics(pipeline.profile.kafka, [source])
    sent = produce(pipeline.profile.kafka, orders(source.topic, seed=3), count=300).delivered
    assert sent == 300
    start = floor.start if side_name == "floor" else floor.start_fused
    queries = start(spark, pipeline, source)
    try:
        for query in queries:  # each hop after the one it reads
            query.processAllAvailable()
        side = Side(side_name, pipeline)
        assert side.landed(sent)
        where = floor.paths(pipeline)
        for layer in ("bronze", "silver"):
            assert spark.read.format("delta").load(where[layer][0]).count() == sent, layer
        gold = spark.read.format("delta").load(where["gold"][0])
        assert gold.agg(F.sum("events")).first()[0] == sent, "each record counted once"

        # Records arriving later are counted in the minutes they touch, the earlier ones
        # recomputed, not counted again.
        more = produce(pipeline.profile.kafka, orders(source.topic, seed=4), count=20).delivered
        for query in queries:
            query.processAllAvailable()
        assert gold.agg(F.sum("events")).first()[0] == sent + more

        freshness = side.freshness_ms(0)
        assert set(freshness) == {"bronze", "silver", "gold"}
        for layer, samples in freshness.items():
            assert len(samples) == sent + more, layer
            assert all(fresh > 0 for _, fresh in samples), layer
        # Gold shows each row no sooner than silver does, so it is no fresher in sum.
        assert sum(f for _, f in freshness["gold"]) >= sum(f for _, f in freshness["silver"])
        assert set(side.tables()) == {
            "bronze",
            f"silver.{floor.SILVER}",
            f"gold.{floor.GOLD}",
        }
    finally:
        for query in queries:
            query.stop()
