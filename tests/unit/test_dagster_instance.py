"""The Dagster instance of a profile: dagster.yaml is generated from the profile (local
storage, or the profile's PostgreSQL with the password only by environment variable),
rewritten when the profile changes, and a missing password stops start-up naming the variable.
Dagster running on such an instance is in tests/orchestration/test_dagster_postgres.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.services.dagster_instance import HEADER, dagster_home, main, prepare_instance
from devstack.services.dagster_ui import DagsterUi
from devstack.services.ports import free_port
from streaming.config import Settings, load_settings
from streaming.errors import ConfigError
from tests.conftest import write_conf

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
VAR = "HEADWATER_TEST_DAGSTER_PG_PASSWORD"
SECRET = "pw-not-in-any-file-7c1e"

RUN_QUEUE = {
    "tag_concurrency_limits": [{"key": "headwater/mode", "value": "continuous", "limit": 1}]
}


def postgres_block(**overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "host": "dagster-db.example",
        "port": 6543,
        "database": "dagster_runs",
        "user": "dagster",
        "password_env": VAR,
    }
    return {**block, **overrides}


def settings_with(root: Path, storage: dict[str, Any] | None) -> Settings:
    profile = {"dagster_storage": storage} if storage is not None else {}
    return write_conf(root, profile=profile)


def test_repository_profiles_local_default_and_cluster_postgres() -> None:
    local = load_settings(REPO / "conf", "local", environ={})
    assert local.profile.dagster_storage is None
    cluster = load_settings(REPO / "conf", "cluster", environ={})
    assert cluster.profile.dagster_storage is not None
    pg = cluster.profile.dagster_storage.postgres
    assert pg.password_env == "HEADWATER_DAGSTER_PG_PASSWORD"
    assert (
        "password"
        not in yaml.safe_load((REPO / "conf/profiles/cluster.yaml").read_text())["dagster_storage"][
            "postgres"
        ]
    ), "only the variable's name is in the file"


def test_local_profile_keeps_dagster_default_storage(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, None)
    home = prepare_instance(settings, environ={})
    assert home == tmp_path / "state" / "dagster" == dagster_home(settings)
    text = (home / "dagster.yaml").read_text()
    assert text.startswith(HEADER)
    assert yaml.safe_load(text) == {
        "run_queue": RUN_QUEUE,
        "telemetry": {"enabled": False},
        "freshness": {"enabled": True},  # the daemon evaluates the assets' freshness policies
    }


def test_postgres_storage_refers_to_the_password_by_its_variable(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, {"postgres": postgres_block(params={"sslmode": "require"})})
    home = prepare_instance(settings, environ={VAR: SECRET})
    text = (home / "dagster.yaml").read_text()
    assert SECRET not in text
    assert yaml.safe_load(text) == {
        "run_queue": RUN_QUEUE,
        "telemetry": {"enabled": False},
        "freshness": {"enabled": True},
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": "dagster",
                    "password": {"env": VAR},
                    "hostname": "dagster-db.example",
                    "db_name": "dagster_runs",
                    "port": 6543,
                    "scheme": "postgresql+psycopg2",
                    "params": {"sslmode": "require"},
                }
            }
        },
    }


def test_a_missing_password_variable_is_named_before_anything_is_written(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, {"postgres": postgres_block()})
    expected = rf"environment variable {VAR} \(dagster_storage\.postgres\.password_env.* is not set"
    with pytest.raises(ConfigError, match=expected):
        prepare_instance(settings, environ={})
    with pytest.raises(ConfigError, match=expected):
        prepare_instance(settings, environ={VAR: ""})
    assert not (dagster_home(settings) / "dagster.yaml").exists()


def test_the_ui_checks_the_password_variable_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_with(tmp_path, {"postgres": postgres_block()})
    monkeypatch.delenv(VAR, raising=False)
    with pytest.raises(ConfigError, match=f"environment variable {VAR} "):
        DagsterUi.from_settings(settings)
    monkeypatch.setenv(VAR, SECRET)
    ui = DagsterUi.from_settings(settings)
    assert ui.storage == settings.profile.dagster_storage
    assert ui.env["DAGSTER_HOME"] == str(dagster_home(settings))
    # Unset between construction and start: start says so too, and starts nothing.
    ui.env.pop(VAR)
    ui.port = free_port()
    with pytest.raises(ConfigError, match=f"environment variable {VAR} "):
        ui.start()
    assert ui.process is None


def test_regenerated_when_the_profile_changes_and_left_alone_when_not(tmp_path: Path) -> None:
    config = tmp_path / "state" / "dagster" / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("# an old, hand-written instance\ntelemetry:\n  enabled: true\n")
    local = settings_with(tmp_path, None)
    prepare_instance(local, environ={})
    assert "storage" not in yaml.safe_load(config.read_text())
    written = config.stat().st_mtime_ns
    prepare_instance(local, environ={})
    assert config.stat().st_mtime_ns == written, "the same profile: the file is not rewritten"
    with_postgres = settings_with(tmp_path, {"postgres": postgres_block()})
    prepare_instance(with_postgres, environ={VAR: SECRET})
    assert yaml.safe_load(config.read_text())["storage"]["postgres"]["postgres_db"]["port"] == 6543
    prepare_instance(settings_with(tmp_path, None), environ={})
    assert "storage" not in yaml.safe_load(config.read_text()), "back to the local default"
    assert sorted(p.name for p in config.parent.iterdir()) == ["dagster.yaml"]


def test_the_command_writes_the_instance_for_dagster_started_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_with(tmp_path, {"postgres": postgres_block()})
    monkeypatch.delenv(VAR, raising=False)
    assert main(["--conf", str(settings.conf_dir), "--profile", "local"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: environment variable {VAR} ")
    monkeypatch.setenv(VAR, SECRET)
    assert main(["--conf", str(settings.conf_dir), "--profile", "local"]) == 0
    out, err = capsys.readouterr()
    assert out == f"DAGSTER_HOME={dagster_home(settings)}\n" and err == ""
    assert "storage" in yaml.safe_load((dagster_home(settings) / "dagster.yaml").read_text())


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({}, r"field 'dagster_storage\.postgres' is required"),
        ({"postgres": postgres_block(host=None)}, r"field 'dagster_storage\.postgres\.host'"),
        (
            {"postgres": {k: v for k, v in postgres_block().items() if k != "password_env"}},
            r"field 'dagster_storage\.postgres\.password_env' is required",
        ),
        ({"postgres": postgres_block(port=0)}, r"field 'dagster_storage\.postgres\.port'"),
        (
            {"postgres": postgres_block(password=SECRET)},
            r"do not write the password into the profile: set password_env",
        ),
        (
            {"postgres": postgres_block(password_env=SECRET)},
            r"name the environment variable that holds the password",
        ),
        (
            {"postgres": postgres_block(params={"password": SECRET})},
            r"the password comes from password_env, not from params",
        ),
        ({"postgres": postgres_block(), "sqlite": {}}, r"'dagster_storage\.sqlite' is not"),
    ],
)
def test_a_bad_storage_block_is_named_and_never_echoes_a_password(
    tmp_path: Path, storage: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        settings_with(tmp_path, storage)
    assert str(tmp_path / "conf" / "profiles" / "local.yaml") in str(raised.value)
    assert SECRET not in str(raised.value)
