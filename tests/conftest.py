"""Shared fixtures: one SparkSession and one real Kafka broker per test session; every test
gets its own conf directory, topics and lake paths, so tests never share state."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from devstack.services.kafka_broker import LocalKafka
from devstack.services.ports import free_port, free_ports
from streaming.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent


def write_conf(
    root: Path,
    *,
    topics: list[str] | None = None,
    kafka_port: int = 9092,
    controller_port: int = 9093,
    pipeline: dict[str, Any] | None = None,
    spark: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
) -> Settings:
    """A complete conf/ under `root` (absolute paths to the repo's jars and infra), loaded;
    `profile` adds or replaces top-level blocks of the profile."""
    conf = root / "conf"
    (conf / "profiles").mkdir(parents=True, exist_ok=True)
    sources = []
    (conf / "contracts").mkdir(exist_ok=True)
    for topic in topics or ["shop.orders"]:
        entity = topic.rsplit(".", 1)[-1]
        shop_topic = "shop.public.customers" if entity == "customers" else f"shop.{entity}"
        shop_contract = REPO / "conf" / "contracts" / f"{shop_topic}.yaml"
        if shop_contract.is_file():
            # The shop's contract, for this test's own topic name.
            text = shop_contract.read_text().replace(f"topic: {shop_topic}", f"topic: {topic}")
            (conf / "contracts" / f"{topic}.yaml").write_text(text)
            kind = "cdc" if entity == "customers" else "events"
            sources.append({"topic": topic, "partitions": 3, "kind": kind})
        else:
            sources.append({"topic": topic, "partitions": 3, "silver": False})
    pipeline_doc: dict[str, Any] = {"sources": sources}
    pipeline_doc.update(pipeline or {})
    profile_doc = {
        "state_dir": str(root / "state"),
        "spark": {
            "master": "local[2]",
            "app_name": "headwater-test",
            "shuffle_partitions": 2,
            "ui_enabled": False,
            "jars_dir": str(REPO / "infra/jars/spark"),
            "log_config": str(REPO / "infra/spark/log4j2.properties"),
            # One driver serves the whole test run; Spark's 1 GiB default runs out in the fuzz test.
            "extra_conf": {"spark.driver.memory": "2g"},
            **(spark or {}),
        },
        "kafka": {"bootstrap_servers": f"127.0.0.1:{kafka_port}"},
        "local_kafka": {
            "port": kafka_port,
            "controller_port": controller_port,
            "heap": "384m",
            "jars_dir": str(REPO / "infra/jars/kafka"),
            "config_dir": str(REPO / "infra/kafka"),
        },
        "lake": {"root": str(root / "lake"), "checkpoints": str(root / "checkpoints")},
    }
    profile_doc.update(profile or {})
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline_doc))
    (conf / "profiles" / "local.yaml").write_text(yaml.safe_dump(profile_doc))
    return load_settings(conf, "local", environ={})


_SPARK: Future[SparkSession] | None = None
_SPARK_ROOT = Path(tempfile.gettempdir()) / f"headwater-spark-{os.getpid()}"


def _build_session() -> SparkSession:
    from streaming.session import build_spark_session

    return build_spark_session(write_conf(_SPARK_ROOT))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the test run's Spark driver while pytest collects: the JVM starts on the other
    core instead of after the imports."""
    global _SPARK
    if not session.config.option.collectonly:
        _SPARK = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark").submit(
            _build_session
        )


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The one local SparkSession of the test run, built by headwater's own factory."""
    session = _SPARK.result() if _SPARK is not None else _build_session()
    yield session
    session.stop()
    shutil.rmtree(_SPARK_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A real single-node KRaft broker on free loopback ports, started by headwater's own
    broker manager; yields the settings that point at it."""
    root = tmp_path_factory.mktemp("broker")
    kafka_port, controller_port = free_ports(2)
    settings = write_conf(root, kafka_port=kafka_port, controller_port=controller_port)
    local = LocalKafka.from_settings(settings)
    local.up()
    yield settings
    local.down()


@pytest.fixture
def unique() -> str:
    """A short unique token for topic names and paths."""
    return uuid.uuid4().hex[:8]


# The two topologies (conf's pipeline.topology). A test that must hold in both says so with
# @pytest.mark.parametrize("topology", TOPOLOGIES); the others run the default.
TOPOLOGIES = ("fused", "layered")


@pytest.fixture
def topology() -> str:
    """The topology of the `pipeline` and `shop` fixtures' conf: the default, fused, unless a
    test parametrizes `topology`."""
    return "fused"


@pytest.fixture
def pipeline(broker: Settings, tmp_path: Path, unique: str, topology: str) -> Settings:
    """Settings of this test: its own topics (orders and payments) on the shared broker and
    its own lake under tmp_path."""
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    assert broker.profile.local_kafka is not None
    return write_conf(
        tmp_path,
        topics=[f"t{unique}.orders", f"t{unique}.payments"],
        kafka_port=port,
        controller_port=broker.profile.local_kafka.controller_port,
        pipeline={"topology": topology},
    )


def write_shop_conf(root: Path, broker: Settings, unique: str, **conf: Any) -> Settings:
    """A conf/ under `root` of the whole demo shop on `broker`: orders, payments and customers
    (CDC) topics named t<unique>.*, and both gold tables; `conf` as write_conf takes it."""
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    topics = [f"t{unique}.orders", f"t{unique}.payments", f"t{unique}.customers"]
    settings = write_conf(root, topics=topics, kafka_port=port, **conf)
    gold = root / "conf" / "gold"
    gold.mkdir()
    for name in ("revenue_per_minute", "customer_orders"):
        text = (REPO / "conf/gold" / f"{name}.yaml").read_text()
        (gold / f"{name}.yaml").write_text(text)
    return settings


@pytest.fixture
def shop(broker: Settings, tmp_path: Path, unique: str, topology: str) -> Settings:
    """Settings of the whole demo shop on the shared broker: orders, payments and customers
    (CDC) topics of this test, and both gold tables."""
    return write_shop_conf(tmp_path, broker, unique, pipeline={"topology": topology})


# --- change data capture: one PostgreSQL cluster and one Kafka Connect worker per session ---

PG_PASSWORD_ENV = "HEADWATER_TEST_PG_PASSWORD"
PG_REPLICATION_PASSWORD_ENV = "HEADWATER_TEST_PG_REPLICATION_PASSWORD"


def connect_block(port: int) -> dict[str, Any]:
    return {
        "port": port,
        "heap": "384m",
        "jars_dir": str(REPO / "infra/jars/connect"),
        "plugins_dir": str(REPO / "infra/jars/connect-plugins"),
        "config_dir": str(REPO / "infra/connect"),
    }


@pytest.fixture(scope="session")
def cdc_services(broker: Settings) -> Iterator[Settings]:
    """A project-owned PostgreSQL cluster, started by headwater's own service manager on a
    free loopback port; yields its settings. The cluster's passwords are exported for the
    tests' own profiles (postgres.*password_env)."""
    from devstack.services.postgres import LocalPostgres, password

    # Outside pytest's private temp folder: the server runs as the `postgres` user when the
    # tests run as root, and must reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="headwater-cdc-"))
    root.chmod(0o711)
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    settings = write_conf(
        root,
        kafka_port=port,
        profile={
            "postgres": {"port": free_port()},
            "local_postgres": {"schema_file": str(REPO / "infra/postgres/shop.sql")},
        },
    )
    database = LocalPostgres(settings)
    with pytest.MonkeyPatch.context() as env:
        try:
            database.up()
            env.setenv(PG_PASSWORD_ENV, password(settings, "user"))
            env.setenv(PG_REPLICATION_PASSWORD_ENV, password(settings, "replication"))
            yield settings
        finally:
            database.down()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cdc_shop(
    cdc_services: Settings, tmp_path: Path, unique: str, topology: str
) -> Iterator[Settings]:
    """The demo shop of this test, its customers captured by Debezium: its own database
    (t<unique>, the demo tables, a publication and slot of its own) on the session's cluster,
    a Connect worker of its own to start (own port and group), and a connector
    `t<unique>-postgres` writing topic t<unique>.public.customers."""
    from devstack.services.postgres import connect, create_database, prepare_tables

    assert cdc_services.profile.postgres is not None
    port = int(cdc_services.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    topics = [f"t{unique}.orders", f"t{unique}.payments", f"t{unique}.public.customers"]
    settings = write_conf(
        tmp_path,
        topics=topics,
        kafka_port=port,
        pipeline={"topology": topology},
        profile={
            "postgres": {
                "port": cdc_services.profile.postgres.port,
                "database": f"t{unique}",
                "password_env": PG_PASSWORD_ENV,
                "replication_password_env": PG_REPLICATION_PASSWORD_ENV,
                "publication": f"t{unique}",
                "slot": f"t{unique}",
            },
            "kafka_connect": {**connect_block(free_port()), "group_id": f"t{unique}-connect"},
        },
    )
    gold = tmp_path / "conf" / "gold"
    gold.mkdir()
    for name in ("revenue_per_minute", "customer_orders"):
        (gold / f"{name}.yaml").write_text((REPO / "conf/gold" / f"{name}.yaml").read_text())
    connectors = tmp_path / "conf" / "connectors"
    connectors.mkdir()
    connector = yaml.safe_load((REPO / "conf/connectors/shop-postgres.yaml").read_text())
    connector["name"] = f"t{unique}-postgres"
    connector["config"]["topic.prefix"] = f"t{unique}"
    (connectors / "shop-postgres.yaml").write_text(yaml.safe_dump(connector))
    assert settings.profile.postgres is not None
    with connect(cdc_services, "superuser", database="postgres") as admin:
        admin.autocommit = True
        create_database(admin, settings.profile.postgres)
    prepare_tables(settings, REPO / "infra/postgres/shop.sql")
    yield settings
    forget_connector(cdc_services, settings, f"t{unique}-postgres")


def forget_connector(services: Settings, settings: Settings, name: str) -> None:
    """Delete the test's connector (when its worker still runs) and its replication slot (a
    slot left behind keeps WAL)."""
    from devstack.services.kafka_connect import ConnectRest, rest_url
    from devstack.services.postgres import connect
    from streaming.errors import ServiceError

    with contextlib.suppress(ServiceError):
        ConnectRest(rest_url(settings)).call("DELETE", f"/connectors/{name}")
    assert settings.profile.postgres is not None
    slot = settings.profile.postgres.slot
    from tests.helpers import wait_until

    with connect(services, "superuser", database="postgres") as admin:
        admin.autocommit = True

        def slot_state() -> tuple[bool] | None:
            return admin.execute(  # type: ignore[return-value]
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]
            ).fetchone()

        wait_until(lambda: (state := slot_state()) is None or not state[0], 60, f"slot {slot} idle")
        if slot_state() is not None:
            admin.execute("SELECT pg_drop_replication_slot(%s)", [slot])
