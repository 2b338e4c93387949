"""The Dagster code location mirrors conf/: Kafka topics feed bronze tables, one asset each."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from orchestration.defs.bronze.assets import bronze_tables, kafka_topics
from orchestration.defs.resources import HeadwaterResource
from streaming.config import Settings, load_settings
from tests.helpers import produce_shop

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_asset_graph_has_a_bronze_table_per_topic_of_conf() -> None:
    from orchestration.definitions import defs

    graph = defs().resolve_asset_graph()
    settings = load_settings(REPO / "conf", "local", environ={})
    expected = set()
    for source in settings.pipeline.sources:
        topic = dg.AssetKey(["kafka", source.table_name])
        table = dg.AssetKey(["bronze", source.table_name])
        expected |= {topic, table}
        assert graph.get(table).parent_keys == {topic}
        assert graph.get(table).group_name == "bronze"
        assert graph.get(table).kinds == {"spark", "delta"}
        assert graph.get(topic).group_name == "kafka" and graph.get(topic).kinds == {"kafka"}
        assert not graph.get(topic).is_materializable, "Kafka topics are external sources"
    assert set(graph.get_all_asset_keys()) == expected


@pytest.mark.integration
def test_materializing_bronze_catches_the_selected_tables_up(
    spark: SparkSession, pipeline: Settings
) -> None:
    sent = produce_shop(pipeline, 150, seed=11)
    orders = pipeline.pipeline.sources[0]
    resource = HeadwaterResource(conf_dir=str(pipeline.conf_dir), profile="local")
    result = dg.materialize(
        [*kafka_topics(pipeline), bronze_tables(pipeline)],
        resources={"headwater": resource},
        selection=[dg.AssetKey(["bronze", orders.table_name])],
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("bronze_catch_up")
    assert materialization.asset_key == dg.AssetKey(["bronze", orders.table_name])
    expected = sum(1 for d in sent if d.topic == orders.topic)
    assert materialization.metadata["rows_written"] == dg.MetadataValue.int(expected)
    assert materialization.metadata["rows_total"] == dg.MetadataValue.int(expected)
