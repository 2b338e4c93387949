"""The change data capture side of conf: the postgres, local_postgres and kafka_connect blocks,
and the connector config headwater sends to Kafka Connect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.services.kafka_connect import connector_files, render_connector
from devstack.services.postgres import password, server_bin_dir
from streaming.config import LocalPostgresSettings, Settings, load_settings
from streaming.errors import ConfigError, DependencyError

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def settings_with(tmp_path: Path, profile: dict[str, Any]) -> Settings:
    conf = tmp_path / "conf"
    (conf / "profiles").mkdir(parents=True)
    (conf / "connectors").mkdir()
    (conf / "connectors" / "shop-postgres.yaml").write_text(
        (REPO / "conf/connectors/shop-postgres.yaml").read_text()
    )
    (conf / "pipeline.yaml").write_text(
        yaml.safe_dump({"sources": [{"topic": "shop.orders", "silver": False}]})
    )
    doc = {
        "state_dir": str(tmp_path / "state"),
        "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
        "lake": {"root": str(tmp_path / "lake"), "checkpoints": str(tmp_path / "cp")},
        **profile,
    }
    (conf / "profiles" / "local.yaml").write_text(yaml.safe_dump(doc))
    return load_settings(conf, "local", environ={})


def test_the_connector_gets_the_profiles_database_and_a_password_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_REPL", "s3cret")
    settings = settings_with(
        tmp_path,
        {
            "postgres": {
                "host": "db.internal",
                "port": 6432,
                "database": "shop",
                "replication_password_env": "PG_REPL",
                "slot": "my_slot",
                "publication": "my_pub",
                "tables": ["public.customers", "sales.orders"],
            },
            "kafka_connect": {"rest_url": "http://connect:8083"},
        },
    )
    [file] = connector_files(settings)
    secrets = tmp_path / "secrets"
    name, config = render_connector(settings, file, secrets)
    assert name == "shop-postgres"
    assert config["database.hostname"] == "db.internal"
    assert config["database.port"] == "6432"
    assert config["database.user"] == "debezium"
    assert (config["slot.name"], config["publication.name"]) == ("my_slot", "my_pub")
    assert config["table.include.list"] == "public.customers,sales.orders"
    assert config["plugin.name"] == "pgoutput" and config["topic.prefix"] == "shop"
    # The secret is in a file only its owner reads; the config holds a reference to it.
    secret = secrets / "shop-postgres.properties"
    assert config["database.password"] == f"${{file:{secret}:database.password}}"
    assert "s3cret" not in str(config)
    assert secret.read_text() == "database.password=s3cret\n"
    assert secret.stat().st_mode & 0o077 == 0


def test_an_external_connect_cluster_must_resolve_the_password_itself(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        {
            "postgres": {"host": "db.internal", "replication_password_env": "PG_REPL"},
            "kafka_connect": {"rest_url": "http://connect:8083"},
        },
    )
    [file] = connector_files(settings)
    with pytest.raises(ConfigError, match=r"set database.password .* secret reference"):
        render_connector(settings, file, None)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (
            {"local_postgres": {}},
            "local_postgres needs a 'postgres' block",
        ),
        (
            {"postgres": {"host": "db.internal"}, "local_postgres": {}},
            "local_postgres runs on 127.0.0.1, but postgres.host is db.internal",
        ),
        (
            {"postgres": {"tables": ["customers"]}},
            "write table 'customers' as schema.table",
        ),
        (
            {"postgres": {"slot": "Bad-Slot"}},
            "'Bad-Slot' is not a plain PostgreSQL name",
        ),
        (
            {"kafka_connect": {}},
            "kafka_connect needs a 'postgres' block",
        ),
    ],
)
def test_bad_cdc_config_stops_with_a_sentence(
    tmp_path: Path, profile: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_with(tmp_path, profile)


def test_a_missing_password_says_which_variable(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, {"postgres": {"password_env": "HEADWATER_NO_SUCH_VAR"}})
    with pytest.raises(ConfigError, match="HEADWATER_NO_SUCH_VAR"):
        password(settings, "user")
    bare = settings_with(tmp_path / "bare", {"postgres": {}})
    with pytest.raises(ConfigError, match=r"set postgres\.replication_password_env"):
        password(bare, "replication")


def test_missing_postgres_programs_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match="make setup"):
        server_bin_dir(LocalPostgresSettings(bin_dir=str(tmp_path)))
