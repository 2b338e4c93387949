"""A real three-node Kafka cluster on loopback, secured (SASL_SSL, SCRAM-SHA-512): topics get
the profile's three copies and two in sync; the pipeline loses and doubles nothing when a
broker crashes while events flow; a wrong password stops the pipeline and the generator at
start-up with one sentence; and no log ever holds a password."""

from __future__ import annotations

import os
import secrets
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from cryptography import x509
from pydantic import ValidationError
from pyspark.sql import SparkSession

from devstack.generator.producer import Delivered, produce
from devstack.generator.shop import FaultRates, ShopSimulator
from devstack.services.kafka_cluster import PASSWORD_ENV, KafkaCluster, NodePorts
from devstack.services.ports import free_ports
from devstack.services.tls import ensure_certificates
from streaming.config import KafkaSettings, Settings, load_settings
from streaming.errors import ConfigError, ServiceError
from streaming.kafka_client import client_config, ensure_topics
from streaming.runner import run_streams
from tests.conftest import REPO
from tests.helpers import (
    START,
    bronze_records,
    bronze_rows,
    expected_records,
    table_rows,
    wait_until,
)
from tests.integration.test_silver_events import coordinates, oracle

pytestmark = pytest.mark.integration

WRONG_PASSWORD = f"wrong-{secrets.token_hex(8)}"
# A cap, not a target: the generator sends until the crashed broker is back and bronze has
# moved on since; each step waits for STEP_ROWS more bronze rows.
MAX_EVENTS, EVENTS_PER_S, STEP_ROWS = 3000, 20.0, 40


def test_certificates_are_made_once_with_private_keys_0600(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path / "tls")
    contents = {p: p.read_bytes() for p in (first.ca_cert, first.ca_key, first.server)}
    again = ensure_certificates(tmp_path / "tls")
    assert again == first
    assert {p: p.read_bytes() for p in contents} == contents, "valid files are reused"
    assert stat.S_IMODE(first.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.server.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(first.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificates(first.server.read_bytes())[0]
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    first.server.write_bytes(b"not a certificate")
    renewed = ensure_certificates(tmp_path / "tls")
    assert renewed.server.read_bytes() != b"not a certificate", "a broken file is made again"


def test_a_taken_port_stops_up_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = KafkaCluster(
            tmp_path,
            [
                NodePorts(*free_ports(3)),
                NodePorts(port, *free_ports(2)),
            ],
            jars_dir=REPO / "infra/jars/kafka",
            config_dir=REPO / "infra/kafka",
            replication_factor=2,
            min_insync_replicas=1,
        )
        with pytest.raises(ServiceError, match=f"port {port} .* client port of Kafka node 2"):
            cluster.up()


def test_a_node_that_dies_while_starting_stops_up_with_its_error(tmp_path: Path) -> None:
    cluster = KafkaCluster(
        tmp_path,
        [NodePorts(*free_ports(3))],
        jars_dir=REPO / "infra/jars/kafka",
        config_dir=REPO / "infra/kafka",
        heap="2m",  # Kafka runs out of memory while it starts
        secured=False,
        replication_factor=1,
        min_insync_replicas=1,
    )
    with pytest.raises(ServiceError) as failure:
        cluster.up()
    message = str(failure.value)
    assert message.startswith("Kafka node 1 exited with status "), message
    assert f"see {cluster.log_dir(1) / 'server.log'} (" in message
    assert "OutOfMemoryError" in message, "the node's own last error is quoted"
    assert not cluster.status().nodes[0].running


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValidationError, match="min_insync_replicas 3 is more than replication"):
        KafkaSettings(
            bootstrap_servers="127.0.0.1:9092", replication_factor=2, min_insync_replicas=3
        )


def test_the_cluster_profile_asks_for_three_copies_two_in_sync() -> None:
    cluster = load_settings(REPO / "conf", "cluster", environ={}).profile.kafka
    local = load_settings(REPO / "conf", "local", environ={}).profile.kafka
    assert (cluster.replication_factor, cluster.min_insync_replicas) == (3, 2)
    assert (local.replication_factor, local.min_insync_replicas) == (None, None)


def test_up_again_leaves_the_running_nodes_alone(kafka_cluster: KafkaCluster) -> None:
    before = kafka_cluster.status()
    after = kafka_cluster.up()
    assert before.healthy and after.healthy
    assert [n.pid for n in after.nodes] == [n.pid for n in before.nodes]


def test_topics_get_three_copies_and_two_in_sync(on_cluster: Settings) -> None:
    kafka = on_cluster.profile.kafka
    topics = sorted(s.topic for s in on_cluster.pipeline.sources)
    assert sorted(ensure_topics(kafka, on_cluster.pipeline.sources)) == topics
    client = AdminClient(client_config(kafka))

    def every_copy_in_sync() -> bool:
        meta = client.list_topics(timeout=10).topics
        return all(
            set(p.replicas) == set(p.isrs) == {1, 2, 3}
            for t in topics
            for p in meta[t].partitions.values()
        )

    wait_until(every_copy_in_sync, 60, "three in-sync copies of every partition")
    meta = client.list_topics(timeout=10)
    assert set(meta.brokers) == {1, 2, 3}
    assert {t: len(meta.topics[t].partitions) for t in topics} == {t: 3 for t in topics}
    resources = [ConfigResource("topic", t) for t in topics]
    for resource, future in client.describe_configs(resources).items():
        assert future.result()["min.insync.replicas"].value == "2", resource
    assert ensure_topics(kafka, on_cluster.pipeline.sources) == [], "a second call creates none"


def test_pipeline_loses_and_doubles_nothing_when_a_broker_crashes(
    spark: SparkSession,
    kafka_cluster: KafkaCluster,
    on_cluster: Settings,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, kafka = on_cluster, on_cluster.profile.kafka
    orders, payments = (s.topic for s in settings.pipeline.sources)
    ensure_topics(kafka, settings.pipeline.sources)
    # The broker that leads a partition of orders: its crash moves a leadership mid-stream.
    client = AdminClient(client_config(kafka))

    def leader() -> int:
        partitions = client.list_topics(orders, timeout=10).topics[orders].partitions
        return partitions[0].leader if 0 in partitions else -1

    wait_until(lambda: leader() > 0, 30, f"a leader of {orders}[0]")
    victim = leader()

    sent: list[Delivered] = []
    failures: list[BaseException] = []
    stop_producing, stop_streams = threading.Event(), threading.Event()
    simulator = ShopSimulator(
        61, START, faults=FaultRates.parse("none"), orders_topic=orders, payments_topic=payments
    )

    def generate() -> None:
        try:
            report = produce(
                kafka,
                simulator,
                count=MAX_EVENTS,
                rate=EVENTS_PER_S,
                stop=stop_producing,
                keep_deliveries=True,
            )
            sent.extend(report.deliveries)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    def run_pipeline() -> None:
        try:
            run_streams(spark, settings, layers=("bronze", "silver"), stop=stop_streams)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    def silver_rows() -> int:
        return table_rows(settings, "silver.orders", "silver.payments")

    producer = threading.Thread(target=generate, name="generator")
    pipeline = threading.Thread(target=run_pipeline, name="pipeline")
    producer.start()
    pipeline.start()
    timeline: list[str] = []

    def more_bronze(what: str) -> None:
        """Wait for STEP_ROWS more bronze rows (or a failure), noting when they came."""
        target = bronze_rows(settings) + STEP_ROWS
        started = time.monotonic()
        wait_until(
            lambda: bool(failures) or bronze_rows(settings) >= target,
            180,
            f"{what} ({'; '.join(timeline)})",
        )
        timeline.append(f"{what}: {time.monotonic() - started:.0f} s")
        assert not failures, failures

    try:
        more_bronze("bronze rows before the crash")
        kafka_cluster.stop_node(victim, kill=True)
        assert [n.running for n in kafka_cluster.status().nodes].count(False) == 1
        more_bronze(f"bronze rows with broker {victim} down")
        started = time.monotonic()
        kafka_cluster.start_node(victim)
        timeline.append(f"restart of broker {victim}: {time.monotonic() - started:.0f} s")
        more_bronze(f"bronze rows once broker {victim} is back")
        assert producer.is_alive(), f"the generator stopped early ({'; '.join(timeline)})"
        stop_producing.set()
        producer.join(timeout=240)
        assert not producer.is_alive() and not failures, failures
        wait_until(
            lambda: bool(failures) or min(bronze_rows(settings), silver_rows()) >= len(sent),
            180,
            f"{len(sent)} rows in bronze and silver",
        )
        assert not failures, failures
    finally:
        stop_producing.set()
        stop_streams.set()
        producer.join(timeout=120)
        pipeline.join(timeout=180)
    assert not pipeline.is_alive(), "the pipeline did not stop"
    assert not failures, failures

    assert kafka_cluster.status().healthy
    assert bronze_records(spark, settings) == expected_records(sent)
    expected_silver, quarantined, duplicates = oracle(sent, orders)
    assert len(expected_silver) == len(sent) > 3 * STEP_ROWS
    assert not quarantined and not duplicates
    silver = coordinates(spark, settings.table_path("silver", "orders"), "event_id")
    silver += coordinates(spark, settings.table_path("silver", "payments"), "event_id")
    assert silver == Counter((*where, event_id) for where, event_id in expected_silver.items())

    captured = capfd.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert kafka_cluster.password() not in text


def test_a_wrong_password_stops_pipeline_and_generator_at_start_up(
    spark: SparkSession,
    kafka_cluster: KafkaCluster,
    on_cluster: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    bootstrap = kafka_cluster.bootstrap_servers
    refused = (
        f"authentication failed for user headwater at bootstrap {bootstrap} (SCRAM-SHA-512): "
        f"check the password in the environment variable named in kafka.sasl.password_env "
        f"({PASSWORD_ENV})"
    )

    with pytest.raises(ConfigError) as pipeline_error:
        run_streams(spark, on_cluster, available_now=True)
    assert str(pipeline_error.value).startswith(refused)
    assert not list(tmp_path.rglob("_delta_log")), "no Delta table was written"
    assert not Path(on_cluster.resolve(on_cluster.profile.lake.checkpoints)).exists()

    generator = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.cli",
            "--conf",
            str(on_cluster.conf_dir),
            "generate",
            "--count",
            "10",
            "--no-progress",
        ],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generator.returncode == 2, generator.stderr[-2000:]
    assert f"headwater: {refused}" in generator.stderr

    captured = capfd.readouterr()
    for text in (
        str(pipeline_error.value),
        generator.stdout,
        generator.stderr,
        captured.out,
        captured.err,
        caplog.text,
    ):
        assert WRONG_PASSWORD not in text
        assert kafka_cluster.password() not in text
    topics = AdminClient(
        client_config(on_cluster.profile.kafka, kafka_cluster.client_environ())
    ).list_topics(timeout=10)
    assert not {s.topic for s in on_cluster.pipeline.sources} & set(topics.topics)


def test_no_file_of_the_cluster_holds_a_password(kafka_cluster: KafkaCluster) -> None:
    """Run last: by now the nodes have logged a crash, a restart and refused logins."""
    passwords = [kafka_cluster.password().encode(), WRONG_PASSWORD.encode()]
    looked_at = 0
    for path in kafka_cluster.home.rglob("*"):
        if not path.is_file() or path == kafka_cluster.credentials_file:
            continue
        content = path.read_bytes()
        looked_at += 1
        assert not any(p in content for p in passwords), path
    # Every node's config, logs, records and metadata (which holds salted SCRAM hashes only).
    assert looked_at >= 3 * 3
    assert stat.S_IMODE(kafka_cluster.credentials_file.stat().st_mode) == 0o600
    for n in kafka_cluster.node_ids:
        config = (kafka_cluster.node_home(n) / "server.properties").read_text()
        assert "password" not in config.lower()
        assert f"ssl.keystore.location={kafka_cluster.certificates.server}" in config
