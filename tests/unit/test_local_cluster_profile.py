"""conf/profiles/local-cluster.yaml: the cluster profile pointed at the clusters `headwater
cluster up` runs here; its addresses agree with the clusters it describes, and the CLI says
what is missing from a profile without them (nothing is started here: tests/cluster/ does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.cli import main
from devstack.services.kafka_cluster import KafkaCluster
from devstack.services.spark_cluster import SparkStandalone
from streaming.config import load_settings
from tests.conftest import REPO, write_conf

pytestmark = pytest.mark.unit


def test_the_local_cluster_profile_points_at_the_clusters_it_runs() -> None:
    settings = load_settings(REPO / "conf", "local-cluster", environ={})
    cluster = load_settings(REPO / "conf", "cluster", environ={}).profile
    profile = settings.profile
    kafka = KafkaCluster.from_settings(settings)
    assert profile.kafka.bootstrap_servers == kafka.bootstrap_servers
    assert profile.kafka.ssl_ca_location == str(kafka.certificates.ca_cert)
    assert Path(profile.kafka.ssl_ca_location).is_absolute()
    # What it keeps of the cluster profile: security, replication, Spark's settings.
    assert profile.kafka.sasl == cluster.kafka.sasl
    assert profile.kafka.security_protocol == "SASL_SSL"
    assert (profile.kafka.replication_factor, profile.kafka.min_insync_replicas) == (3, 2)
    assert (kafka.replication_factor, kafka.min_insync_replicas) == (3, 2)
    assert profile.spark.master is None and not profile.spark.fork_free_local_fs
    spark = SparkStandalone.from_settings(settings)
    assert spark.master_url == "spark://127.0.0.1:7077"
    assert settings.table_path("bronze", "shop_orders").startswith(str(REPO / ".headwater"))
    assert profile.local_kafka is None and profile.postgres is None


def test_cluster_commands_need_a_local_cluster_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_conf(tmp_path)
    assert main(["--conf", str(tmp_path / "conf"), "cluster", "up"]) == 2
    err = capsys.readouterr().err
    assert "neither a local_spark_cluster nor a local_kafka_cluster block" in err
    assert "--profile local-cluster" in err


def test_cluster_status_reports_every_kafka_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_conf(tmp_path, profile={"local_kafka_cluster": {"first_port": 29092}})
    assert main(["--conf", str(tmp_path / "conf"), "cluster", "status"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"kafka node {n}: stopped" for n in (1, 2, 3)]
