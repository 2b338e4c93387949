"""The whole pipeline submitted with spark-submit to a Spark standalone cluster on loopback (a
master and two workers, started by headwater's own cluster manager) writes the same tables as
the same pipeline in local mode, on the same input, read from the secured three-broker Kafka
cluster of this tier (SASL_SSL, SCRAM-SHA-512, three copies of every topic).

Both runs use conf/profiles/cluster.yaml with only its addresses replaced (the cluster's
bootstrap servers and CA, a lake of file: URIs in the test's tmp dir) and its shuffle
partitions sized for two cores; only spark-submit's --master differs. No log of either run,
of the Spark daemons or of the executors holds the Kafka password."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from devstack.generator.customers import CustomerChanges
from devstack.generator.producer import produce
from devstack.generator.shop import FaultRates, ShopSimulator
from devstack.services.kafka_cluster import KafkaCluster
from devstack.services.ports import free_ports
from devstack.services.spark_cluster import SparkStandalone
from streaming.config import LocalSparkClusterSettings, Settings, load_settings
from streaming.deploy import submit_command
from streaming.kafka_client import ensure_topics
from tests.conftest import REPO, write_shop_conf
from tests.helpers import START

pytestmark = pytest.mark.integration

EVENTS, CHANGES = 400, 120
# When a row was ingested (and the day of it): processing time, different in every run.
PROCESSING_TIME = ("ingest_time", "ingest_date")
SUBMIT_DEADLINE_S = 360


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkStandalone]:
    """A master and two workers (1 core, 1 GiB each) on free loopback ports."""
    master, webui = free_ports(2)
    cluster = SparkStandalone(
        LocalSparkClusterSettings(master_port=master, webui_port=webui),
        tmp_path_factory.mktemp("spark-standalone"),
    )
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


def cluster_profile(shop: Settings, name: str, root: Path) -> Settings:
    """Profile `name` of the shop's conf/: the repository's cluster.yaml (copied beside it)
    extended with this test's addresses only: the Kafka cluster's bootstrap servers and CA
    (its SASL_SSL, SCRAM and replication settings stay), a lake and state under `root`, the
    repository's jars."""
    profiles = shop.conf_dir / "profiles"
    shutil.copy(REPO / "conf/profiles/cluster.yaml", profiles / "cluster.yaml")
    doc = {
        "extends": "cluster",
        "state_dir": str(root / "state"),
        "spark": {
            "jars_dir": str(REPO / "infra/jars/spark"),
            "log_config": str(REPO / "infra/spark/log4j2.properties"),
            # Not an address, a size: a real cluster's 64 partitions make every stateful
            # batch 64 tasks on the two cores here (minutes); the results do not depend on it.
            "shuffle_partitions": 2,
        },
        "kafka": {
            "bootstrap_servers": shop.profile.kafka.bootstrap_servers,
            "ssl_ca_location": shop.profile.kafka.ssl_ca_location,
        },
        "lake": {
            "root": (root / "lake").as_uri(),
            "checkpoints": (root / "checkpoints").as_uri(),
        },
    }
    (profiles / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    settings = load_settings(shop.conf_dir, name, environ={})
    assert settings.profile.spark.master is None  # spark-submit's --master decides
    assert settings.profile.kafka.security_protocol == "SASL_SSL"
    assert settings.profile.kafka.sasl == shop.profile.kafka.sasl
    return settings


def submit_all(runs: dict[Path, tuple[list[str], dict[str, str]]]) -> None:
    """Run the spark-submit commands side by side (their output in the log file each is
    keyed by); fails with a log's tail when one fails or the deadline passes."""
    running = {}
    for log, (command, env) in runs.items():
        with log.open("wb") as out:
            running[log] = subprocess.Popen(
                command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
    give_up = time.monotonic() + SUBMIT_DEADLINE_S
    try:
        for log, process in running.items():
            code = process.wait(timeout=max(1.0, give_up - time.monotonic()))
            assert code == 0, f"{log.name}:\n" + log.read_text(errors="replace")[-4000:]
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def delta_tables(lake: Path) -> set[str]:
    """Every Delta table under `lake`, as 'layer/table'."""
    return {str(log.parent.relative_to(lake)) for log in lake.glob("*/*/_delta_log")}


def comparable(spark: SparkSession, path: Path) -> DataFrame:
    """The table at `path` without what records processing time."""
    table = spark.read.format("delta").load(str(path))
    if path.parts[-2:] == ("ops", "stream_progress"):
        # Batches, their timing and sinks' paths differ; what each stream read does not.
        return table.groupBy("query_name").agg(F.sum("num_input_rows").alias("rows"))
    return table.drop(*PROCESSING_TIME)


def test_the_pipeline_on_a_standalone_cluster_writes_what_local_mode_writes(
    spark: SparkSession,
    broker: Settings,
    kafka_cluster: KafkaCluster,
    standalone: SparkStandalone,
    tmp_path: Path,
    unique: str,
) -> None:
    kafka = kafka_cluster.client_settings().model_dump(exclude_none=True)
    shop = write_shop_conf(tmp_path, broker, unique, profile={"kafka": kafka, "local_kafka": None})
    orders, payments, customers = (s.topic for s in shop.pipeline.sources)
    ensure_topics(shop.profile.kafka, shop.pipeline.sources)
    events = ShopSimulator(
        71, START, faults=FaultRates.parse("all"), orders_topic=orders, payments_topic=payments
    )
    changes = CustomerChanges(
        71, START, faults=FaultRates.parse("duplicates,out_of_order"), initial=40, topic=customers
    )
    produce(shop.profile.kafka, events, count=EVENTS)
    produce(shop.profile.kafka, changes, count=CHANGES)

    local = cluster_profile(shop, "cluster_local", tmp_path / "local")
    on_cluster = cluster_profile(shop, "cluster_standalone", tmp_path / "standalone")
    # Side by side: on this small input most of each run is waiting, not computing.
    submit_all(
        {
            tmp_path / "local.log": (
                submit_command(local, "pipeline", available_now=True, master="local[2]"),
                {"PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"},
            ),
            tmp_path / "standalone.log": (
                standalone.submit_command(on_cluster, "pipeline", available_now=True),
                standalone.submit_env(),
            ),
        }
    )

    # The run was the cluster's: an application of that name finished there, with an
    # executor on each worker.
    state = standalone.master_state()
    assert state is not None
    apps = [a for a in state["completedapps"] if a["name"] == on_cluster.profile.spark.app_name]
    assert len(apps) == 1, state
    for worker in (1, 2):
        assert (standalone.work_dir(worker) / apps[0]["id"]).is_dir(), f"no executor on {worker}"

    password = kafka_cluster.password()
    logs = [tmp_path / "local.log", tmp_path / "standalone.log"]
    logs += [p for p in standalone.home.rglob("*") if p.is_file() and p.suffix != ".jar"]
    assert len(logs) > 4, "the daemons' and executors' logs"
    for log in logs:
        assert password not in log.read_text(errors="replace"), f"{log} holds the password"

    lake_a, lake_b = tmp_path / "local" / "lake", tmp_path / "standalone" / "lake"
    tables = delta_tables(lake_a)
    expected = {
        *(f"bronze/{s.table_name}" for s in shop.pipeline.sources),
        "silver/orders",
        "silver/payments",
        "silver/customers",
        "silver/customers_history",
        "gold/revenue_per_minute",
        "gold/customer_orders",
        "ops/stream_progress",
    }
    assert expected <= tables, f"local mode wrote {sorted(tables)}"
    assert delta_tables(lake_b) == tables
    for table in sorted(tables):
        in_local, on_standalone = (
            comparable(spark, lake_a / table),
            comparable(spark, lake_b / table),
        )
        assert on_standalone.schema == in_local.schema, table
        expected_rows = in_local.collect()
        assert table not in expected or expected_rows, f"{table} is empty"
        try:
            assertDataFrameEqual(on_standalone.collect(), expected_rows)
        except AssertionError as exc:
            raise AssertionError(f"{table} differs on the cluster: {exc}") from None
