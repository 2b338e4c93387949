"""Fixtures of the cluster tier: one secured three-node Kafka cluster on loopback per test
session, started and stopped by headwater's own cluster manager, and per-test conf that points
at it (SASL_SSL, SCRAM-SHA-512, the credentials in environment variables)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.services.kafka_cluster import KafkaCluster, NodePorts
from devstack.services.ports import free_ports
from streaming.config import Settings
from tests.conftest import REPO, write_conf

NODES = 3
HEAP = "320m"


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """Three KRaft nodes (broker and controller each) with SASL_SSL client listeners; the
    environment holds the credentials the profile's sasl block names while it runs."""
    # Not under pytest's tmp dir: the last test of the session reads the nodes' logs, and
    # a short path keeps the processes' command lines readable in `ps`.
    root = Path(tempfile.mkdtemp(prefix="headwater-cluster-"))
    cluster = KafkaCluster(
        root,
        [NodePorts(*free_ports(3)) for _ in range(NODES)],
        jars_dir=REPO / "infra/jars/kafka",
        config_dir=REPO / "infra/kafka",
        heap=HEAP,
    )
    with pytest.MonkeyPatch.context() as env:
        try:
            cluster.up()
            for name, value in cluster.client_environ().items():
                env.setenv(name, value)
            yield cluster
        finally:
            cluster.down()
            shutil.rmtree(root, ignore_errors=True)


def cluster_conf(root: Path, cluster: KafkaCluster, unique: str) -> Settings:
    """A conf/ under `root` whose profile's kafka block is the cluster's: orders and payments
    topics of this test (t<unique>.*), its own lake."""
    kafka = cluster.client_settings().model_dump(exclude_none=True)
    return write_conf(
        root,
        topics=[f"t{unique}.orders", f"t{unique}.payments"],
        profile={"kafka": kafka, "local_kafka": None},
    )


@pytest.fixture
def on_cluster(kafka_cluster: KafkaCluster, tmp_path: Path, unique: str) -> Settings:
    """Settings of this test on the session's cluster."""
    return cluster_conf(tmp_path, kafka_cluster, unique)
