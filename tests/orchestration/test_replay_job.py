"""The replay job, run in process against the real broker: it reports what it replayed as a
materialization of the bronze table."""

from __future__ import annotations

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from orchestration.defs.replay.jobs import JOB, replay_job
from orchestration.defs.resources import HeadwaterResource
from streaming.config import Settings
from tests.helpers import bronze_records, expected_records, produce_shop

pytestmark = pytest.mark.integration


def test_replay_job_materializes_bronze_with_what_it_did(
    spark: SparkSession, pipeline: Settings
) -> None:
    orders = pipeline.pipeline.sources[0]
    sent = [d for d in produce_shop(pipeline, 60, seed=41) if d.topic == orders.topic]
    job = replay_job(pipeline)
    assert job.name == JOB
    resources = {"headwater": HeadwaterResource(conf_dir=str(pipeline.conf_dir), profile="local")}
    config = {"topic": orders.topic, "from_offsets": {"0": 0, "1": 0, "2": 0}}

    result = job.execute_in_process(
        run_config={"ops": {"replay_topic": {"config": config}}}, resources=resources
    )
    assert result.success
    [first] = result.asset_materializations_for_node("replay_topic")
    assert first.asset_key == dg.AssetKey(["bronze", orders.table_name])
    assert first.metadata["records_read"] == dg.MetadataValue.int(len(sent))
    assert first.metadata["inserted"] == dg.MetadataValue.int(len(sent))
    assert first.metadata["already_present"] == dg.MetadataValue.int(0)
    assert first.metadata["delta_version"] == dg.MetadataValue.int(1), "created, then one MERGE"
    assert bronze_records(spark, pipeline) == expected_records(sent)

    again = job.execute_in_process(
        run_config={"ops": {"replay_topic": {"config": config}}}, resources=resources
    )
    [second] = again.asset_materializations_for_node("replay_topic")
    assert second.metadata["inserted"] == dg.MetadataValue.int(0)
    assert second.metadata["already_present"] == dg.MetadataValue.int(len(sent))
    assert second.metadata["delta_version"] == dg.MetadataValue.int(1)


def test_replay_job_refuses_a_config_without_a_start(pipeline: Settings) -> None:
    resources = {"headwater": HeadwaterResource(conf_dir=str(pipeline.conf_dir), profile="local")}
    topic = pipeline.pipeline.sources[0].topic
    result = replay_job(pipeline).execute_in_process(
        run_config={"ops": {"replay_topic": {"config": {"topic": topic}}}},
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "say where the replay starts" in str(failure.step_failure_data.error)
