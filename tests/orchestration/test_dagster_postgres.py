"""Dagster on PostgreSQL storage, as the cluster profile runs it: a profile with a
`dagster_storage.postgres` block (password by environment variable) points at a database of
the test's own on the session's PostgreSQL (the CDC tests' cluster); headwater generates the
instance, the code location's real job `maintain_tables` runs on it, and its run and events
are rows of Dagster's tables in that database, with no SQLite file in DAGSTER_HOME and no
password in any file. The webserver, started as the demo starts it, lists the run."""

from __future__ import annotations

import json
import secrets
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from pyspark.sql import SparkSession

from devstack.services.dagster_instance import prepare_instance
from devstack.services.dagster_ui import DagsterUi
from devstack.services.ports import free_port
from devstack.services.postgres import connect, create_database
from orchestration.defs.maintenance.jobs import JOB, OP
from orchestration.defs.resources import HeadwaterResource
from streaming.config import CONF_ENV, PROFILE_ENV, PostgresSettings, Settings
from streaming.errors import ConfigError
from tests.conftest import REPO, write_conf

pytestmark = pytest.mark.integration

VAR = "HEADWATER_TEST_DAGSTER_PG_PASSWORD"
UI_DEADLINE_S = 300.0  # the webserver and its code server on two busy cores


@dataclass(frozen=True)
class StoredRun:
    settings: Settings
    home: Path
    database: str  # also the login that owns it
    password: str
    port: int
    run_id: str
    observed: frozenset[tuple[str, ...]]  # asset keys the run observed, as it reported them

    def query(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=self.database,
            user=self.database,
            password=self.password,
        ) as db:
            return db.execute(statement, params).fetchall()


@pytest.fixture(scope="module")
def stored_run(
    cdc_services: Settings, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoredRun]:
    """A database and login of this module's own for Dagster, a conf whose profile stores
    Dagster there, and one run of `maintain_tables` from the code location on that instance."""
    assert cdc_services.profile.postgres is not None
    port = cdc_services.profile.postgres.port
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(24)
    with connect(cdc_services, "superuser", database="postgres") as admin:
        admin.autocommit = True
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        create_database(admin, PostgresSettings(database=name, user=name))
    root = tmp_path_factory.mktemp("dagster-postgres")
    settings = write_conf(
        root,
        topics=[f"t{name}.orders"],
        profile={
            "dagster_ui": {"port": free_port()},
            "dagster_storage": {
                "postgres": {
                    "host": "127.0.0.1",
                    "port": port,
                    "database": name,
                    "user": name,
                    "password_env": VAR,
                }
            },
        },
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv(VAR, password)
            env.setenv(CONF_ENV, str(settings.conf_dir))
            env.setenv(PROFILE_ENV, settings.profile_name)
            home = prepare_instance(settings)
            from orchestration.definitions import defs

            job = defs().resolve_job_def(JOB)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                result = job.execute_in_process(
                    run_config={"ops": {OP: {"config": {"tables": []}}}},
                    resources={
                        "headwater": HeadwaterResource(
                            conf_dir=str(settings.conf_dir), profile=settings.profile_name
                        )
                    },
                    instance=instance,
                )
            assert result.success
            observed = frozenset(
                tuple(o.asset_key.path) for o in result.asset_observations_for_node(OP)
            )
            yield StoredRun(settings, home, name, password, port, result.run_id, observed)
    finally:
        with connect(cdc_services, "superuser", database="postgres") as admin:
            admin.autocommit = True
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def files_holding(home: Path, secret: str) -> list[str]:
    return [
        str(f.relative_to(home))
        for f in home.rglob("*")
        if f.is_file() and secret.encode() in f.read_bytes()
    ]


def sqlite_files(home: Path) -> list[str]:
    """What Dagster's default storage would have written: history/runs.db, a .db per run's
    event log, schedules/schedules.db."""
    return sorted(
        str(f.relative_to(home))
        for f in home.rglob("*")
        if f.suffix in (".db", ".sqlite") or f.name in ("history", "schedules")
    )


def test_the_run_and_its_events_are_stored_in_postgres(stored_run: StoredRun) -> None:
    run_id = stored_run.run_id
    [(job, status)] = stored_run.query(
        "SELECT pipeline_name, status FROM runs WHERE run_id = %s", run_id
    )
    assert (job, status) == (JOB, "SUCCESS")
    events = stored_run.query(
        "SELECT dagster_event_type, asset_key FROM event_logs WHERE run_id = %s ORDER BY id",
        run_id,
    )
    kinds = [kind for kind, _ in events]
    started, succeeded = dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS
    assert kinds.count(started.value) == 1 and kinds.count(succeeded.value) == 1
    assert kinds.index(started.value) < kinds.index(succeeded.value)
    assert {"STEP_START", "STEP_SUCCESS"} <= set(kinds)
    stored = {tuple(json.loads(key)) for kind, key in events if kind == "ASSET_OBSERVATION"}
    # Every table of the one-topic conf, observed (skipped: none exists yet) and stored.
    table = stored_run.settings.pipeline.sources[0].table_name
    assert {("bronze", table), ("silver", "orders"), ("quarantine", table)} <= stored
    assert stored == stored_run.observed
    # A second instance from the same file, as another Dagster process would open it.
    with dg.DagsterInstance.from_config(str(stored_run.home)) as again:
        run = again.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert len(again.all_logs(run_id)) == len(events)
    assert sqlite_files(stored_run.home) == []
    assert files_holding(stored_run.home, stored_run.password) == []
    config = (stored_run.home / "dagster.yaml").read_text()
    assert f"env: {VAR}" in config


def test_a_missing_password_variable_stops_start_up_naming_it(
    stored_run: StoredRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VAR, raising=False)
    expected = f"environment variable {VAR} (dagster_storage.postgres.password_env"
    with pytest.raises(ConfigError) as raised:
        prepare_instance(stored_run.settings)
    assert str(raised.value).startswith(expected)
    with pytest.raises(ConfigError) as raised:
        DagsterUi.from_settings(stored_run.settings)
    assert str(raised.value).startswith(expected)


RUNS = "{ runsOrError { __typename ... on Runs { results { runId jobName status } } } }"


def test_the_webserver_lists_the_run_from_postgres(
    stored_run: StoredRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, stored_run.password)
    ui = DagsterUi.from_settings(stored_run.settings)
    assert ui.home == stored_run.home
    # The webserver alone (read-only), not `dagster dev`: no daemon to start pipeline runs.
    ui.command = [
        sys.executable,
        "-m",
        "dagster_webserver",
        "--read-only",
        "-h",
        "127.0.0.1",
        "-p",
        str(ui.port),
        "-m",
        "orchestration.definitions",
    ]
    ui.cwd = REPO
    ui.start()
    try:
        ui.wait_until_answering(UI_DEADLINE_S)
        request = urllib.request.Request(
            f"{ui.url}/graphql",
            data=json.dumps({"query": RUNS}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            runs = json.load(reply)["data"]["runsOrError"]
    finally:
        ui.stop()
    assert runs["__typename"] == "Runs"
    assert {"runId": stored_run.run_id, "jobName": JOB, "status": "SUCCESS"} in runs["results"]
    assert sqlite_files(stored_run.home) == []
    assert files_holding(stored_run.home, stored_run.password) == []
