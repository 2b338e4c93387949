"""Kafka -> bronze against the real broker: exactly the records Kafka holds, once each."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from devstack.services.kafka_broker import LocalKafka
from streaming.config import Settings
from streaming.kafka_client import client_config, end_offsets, ensure_topics
from streaming.progress import LAYER as OPS
from streaming.progress import TABLE as PROGRESS
from streaming.runner import StreamFailed, query_names, run_streams
from tests.helpers import bronze_records, expected_records, produce_shop, wait_until

pytestmark = pytest.mark.integration


def kafka_record_count(settings: Settings) -> int:
    return sum(
        sum(end_offsets(settings.profile.kafka, s.topic).values())
        for s in settings.pipeline.sources
    )


def test_broker_up_is_idempotent_and_answers(broker: Settings) -> None:
    local = LocalKafka.from_settings(broker)
    before = local.status()
    status, started = local.up()
    assert before.running and before.answering
    assert not started and status.pid == before.pid


def test_bronze_holds_every_record_exactly_once_across_reruns(
    spark: SparkSession, pipeline: Settings
) -> None:
    sent = produce_shop(
        pipeline, 400, seed=1, faults="duplicates=0.1,malformed=0.05,null_values=0.03"
    )
    faults = {d.fault for d in sent}
    assert {"duplicates", "malformed", "null_values"} <= faults, "the input has the awkward records"
    assert kafka_record_count(pipeline) == 400

    rows = run_streams(spark, pipeline, available_now=True)
    writers = {query_names(pipeline)[f"bronze:{s.topic}"] for s in pipeline.pipeline.sources}
    assert sum(n for name, n in rows.items() if name in writers) == 400
    assert bronze_records(spark, pipeline) == expected_records(sent)

    run_streams(spark, pipeline, available_now=True)
    assert bronze_records(spark, pipeline) == expected_records(sent), "a rerun adds nothing"

    more = produce_shop(pipeline, 150, seed=2, faults="duplicates=0.2")
    run_streams(spark, pipeline, available_now=True)
    assert bronze_records(spark, pipeline) == expected_records(sent + more)
    assert sum(bronze_records(spark, pipeline).values()) == 550 == kafka_record_count(pipeline)


def test_bronze_keeps_headers_and_kafka_coordinates(
    spark: SparkSession, pipeline: Settings
) -> None:
    produce_shop(pipeline, 30, seed=3)
    run_streams(spark, pipeline, available_now=True)
    table = spark.read.format("delta").load(
        pipeline.table_path("bronze", pipeline.pipeline.sources[0].table_name)
    )
    row = table.orderBy("partition", "offset").first()
    assert row is not None
    assert [(h.key, bytes(h.value)) for h in row.headers] == [("producer", b"headwater-generator")]
    assert row.topic == pipeline.pipeline.sources[0].topic
    assert row.kafka_timestamp is not None and row.ingest_time >= row.kafka_timestamp
    assert row.ingest_date == row.ingest_time.date()
    partitions = {r.partition for r in table.select("partition").distinct().collect()}
    assert partitions <= {0, 1, 2} and len(partitions) > 1


def test_backpressure_splits_a_backlog_into_bounded_batches(
    spark: SparkSession, broker: Settings, tmp_path, unique: str
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import write_conf

    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    settings = write_conf(
        tmp_path,
        topics=[f"t{unique}.orders", f"t{unique}.payments"],
        kafka_port=port,
        pipeline={"bronze": {"max_offsets_per_trigger": 50}},
    )
    sent = produce_shop(settings, 300, seed=4)
    run_streams(spark, settings, available_now=True)
    assert bronze_records(spark, settings) == expected_records(sent)
    progress = spark.read.format("delta").load(settings.table_path(OPS, PROGRESS))
    writer = query_names(settings)[f"bronze:{settings.pipeline.sources[0].topic}"]
    orders = progress.where(F.col("query_name") == writer)
    batches = [r.num_input_rows for r in orders.orderBy("batch_id").collect()]
    assert max(batches) <= 50 and sum(batches) == sum(
        1 for d in sent if d.topic == settings.pipeline.sources[0].topic
    )
    assert len(batches) >= 3


def test_progress_table_records_every_batch_and_lag(
    spark: SparkSession, pipeline: Settings
) -> None:
    sent = produce_shop(pipeline, 200, seed=5)
    run_streams(spark, pipeline, available_now=True)
    progress = spark.read.format("delta").load(pipeline.table_path(OPS, PROGRESS))
    per_query = {
        r.query_name: r.rows
        for r in progress.groupBy("query_name").agg(F.sum("num_input_rows").alias("rows")).collect()
    }
    writers = query_names(pipeline)  # the query that writes each stream, in either topology
    for source in pipeline.pipeline.sources:
        assert per_query[writers[f"bronze:{source.topic}"]] == sum(
            1 for d in sent if d.topic == source.topic
        )
    bronze_orders = writers[f"bronze:{pipeline.pipeline.sources[0].topic}"]
    last = (
        progress.where(F.col("query_name") == bronze_orders)
        .orderBy(F.col("batch_id").desc())
        .first()
    )
    assert last is not None
    assert last.offsets_behind_latest == 0, "caught up: nothing behind the latest offset"
    assert last.batch_duration_ms > 0 and "triggerExecution" in last.duration_ms
    assert last.sources[0].description.startswith("KafkaV2[Subscribe[")


def test_data_loss_stops_the_stream_with_a_clear_sentence(
    spark: SparkSession, pipeline: Settings
) -> None:
    orders = pipeline.pipeline.sources[0]
    produce_shop(pipeline, 60, seed=6)
    run_streams(spark, pipeline, [orders.topic], available_now=True)
    # Recreate the topic: the checkpoint expects offsets Kafka no longer has.
    admin = AdminClient(client_config(pipeline.profile.kafka))
    admin.delete_topics([orders.topic], operation_timeout=30)[orders.topic].result()
    wait_until(
        lambda: orders.topic not in admin.list_topics(timeout=10).topics,
        30,
        "the topic to be deleted",
    )
    ensure_topics(pipeline.profile.kafka, [orders])
    assert sum(end_offsets(pipeline.profile.kafka, orders.topic).values()) == 0
    produce_shop(pipeline, 5, seed=7)
    with pytest.raises(StreamFailed) as failure:
        run_streams(spark, pipeline, [orders.topic], available_now=True)
    message = str(failure.value)
    writer = query_names(pipeline)[f"bronze:{orders.topic}"]
    assert message.startswith(f"stream {writer} stopped because Kafka no longer holds records")
    assert "bronze.fail_on_data_loss: false" in message
