"""Kafka Connect with Debezium: the worker headwater runs on 127.0.0.1, and the connectors of
conf/connectors/ registered with it (or with an existing Connect cluster at `rest_url`).

`LocalConnect.up` is idempotent, waits until the worker's REST API answers and says clearly
when its port is taken; `down` stops it (SIGTERM, then SIGKILL after a deadline). Its files
live under <state_dir>/connect/. `apply_connectors` creates or updates every connector and
waits until it and its tasks run; the database password reaches the worker as a
`${file:...}` reference, never in the connector's config.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml

from devstack.services.kafka_broker import _alive, owned_pid, port_in_use
from devstack.services.postgres import password
from streaming.config import KafkaConnectSettings, Settings
from streaming.errors import ConfigError, DependencyError, ServiceError
from streaming.versions import require_java

START_DEADLINE_S = 180.0
RUNNING_DEADLINE_S = 120.0
STOP_DEADLINE_S = 30.0
WORKER_CLASS = "org.apache.kafka.connect.cli.ConnectDistributed"
PASSWORD_KEY = "database.password"


@dataclass(frozen=True)
class ConnectStatus:
    running: bool
    answering: bool
    pid: int | None
    url: str

    def describe(self) -> str:
        if self.running and self.answering:
            return f"connect: running (pid {self.pid}) at {self.url}"
        if self.running:
            return f"connect: process {self.pid} is alive but does not answer at {self.url}"
        return "connect: stopped"


@dataclass(frozen=True)
class ConnectorStatus:
    name: str
    state: str  # RUNNING, PAUSED, FAILED, UNASSIGNED, ...
    tasks: tuple[str, ...]
    trace: str | None

    @property
    def running(self) -> bool:
        return (
            self.state == "RUNNING" and bool(self.tasks) and all(t == "RUNNING" for t in self.tasks)
        )

    def describe(self) -> str:
        tasks = ", ".join(self.tasks) or "no tasks yet"
        return f"connector {self.name}: {self.state} (tasks: {tasks})"


class ConnectRest:
    """The REST API of a Connect cluster."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                text = reply.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("message", detail)
            raise ServiceError(
                f"Kafka Connect at {self.url} refused {method} {path}: {exc.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"Kafka Connect at {self.url} does not answer: {exc}") from None
        return json.loads(text) if text else None

    def answers(self) -> bool:
        try:
            self.call("GET", "/", timeout=2)
            return True
        except ServiceError:
            return False

    def status(self, name: str) -> ConnectorStatus | None:
        try:
            doc = self.call("GET", f"/connectors/{name}/status")
        except ServiceError as exc:
            if " 404 " in str(exc):
                return None
            raise
        tasks = doc.get("tasks", [])
        traces = [doc["connector"].get("trace")] + [t.get("trace") for t in tasks]
        return ConnectorStatus(
            name,
            doc["connector"]["state"],
            tuple(t["state"] for t in tasks),
            next((t for t in traces if t), None),
        )


def rest_url(settings: Settings) -> str:
    connect = _connect(settings)
    return connect.rest_url or f"http://127.0.0.1:{connect.port}"


def _connect(settings: Settings) -> KafkaConnectSettings:
    if settings.profile.kafka_connect is None:
        raise ConfigError(
            f"profile '{settings.profile_name}' has no kafka_connect block: add one to capture "
            "changes from PostgreSQL with Debezium"
        )
    return settings.profile.kafka_connect


# --- connectors ----------------------------------------------------------------------------


def connector_files(settings: Settings) -> list[Path]:
    """conf/connectors/*.yaml, in name order."""
    folder = settings.conf_dir / "connectors"
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def connector_name(file: Path) -> str:
    """The `name` a connector file gives (its file name without .yaml when it has none)."""
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    name = doc.get("name") if isinstance(doc, dict) else None
    return str(name) if name else file.stem


def render_connector(
    settings: Settings, file: Path, secrets_dir: Path | None
) -> tuple[str, dict[str, str]]:
    """A connector's name and full config: the YAML's, with the database coordinates from the
    profile's `postgres` block where the YAML leaves them out.

    With `secrets_dir` (headwater's own worker) the replication password is written there and
    referenced as ${file:...}; an external cluster must resolve `database.password` itself.
    Raises ConfigError naming the file and what to fix.
    """
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("name"), str)
        or not isinstance(doc.get("config"), dict)
    ):
        raise ConfigError(f"{file} needs a 'name' (text) and a 'config' mapping")
    name: str = doc["name"]
    config = {str(k): str(v) for k, v in doc["config"].items()}
    if "connector.class" not in config:
        raise ConfigError(f"{file}: config needs connector.class")
    pg = settings.profile.postgres
    if pg is None:
        raise ConfigError(
            f"{file} needs the profile's 'postgres' block (the database it captures): add one "
            f"to profile '{settings.profile_name}'"
        )
    defaults = {
        "database.hostname": pg.host,
        "database.port": str(pg.port),
        "database.dbname": pg.database,
        "database.user": pg.replication_user,
        "publication.name": pg.publication,
        "slot.name": pg.slot,
        "table.include.list": ",".join(pg.tables),
    }
    for key, value in defaults.items():
        config.setdefault(key, value)
    if PASSWORD_KEY not in config:
        if secrets_dir is None:
            raise ConfigError(
                f"{file}: set {PASSWORD_KEY} to a secret reference your Connect cluster resolves "
                "(e.g. ${file:/etc/kafka/secrets.properties:pg_password}); headwater only "
                "writes secrets for the worker it runs"
            )
        secrets_dir.mkdir(parents=True, exist_ok=True)
        secrets_dir.chmod(0o700)
        secret = secrets_dir / f"{name}.properties"
        secret.touch(mode=0o600)
        secret.write_text(f"{PASSWORD_KEY}={password(settings, 'replication')}\n")
        config[PASSWORD_KEY] = "${file:" + str(secret) + ":" + PASSWORD_KEY + "}"
    config["name"] = name
    return name, config


def apply_connectors(
    settings: Settings,
    rest: ConnectRest,
    secrets_dir: Path | None,
    deadline_s: float = RUNNING_DEADLINE_S,
) -> list[ConnectorStatus]:
    """Create or update every connector of conf/connectors/ and wait until each runs.

    Raises ServiceError with the connector's own error when one fails or does not start.
    """
    statuses = []
    for file in connector_files(settings):
        name, config = render_connector(settings, file, secrets_dir)
        rest.call("PUT", f"/connectors/{name}/config", config)
        statuses.append(wait_until_running(rest, name, deadline_s))
    return statuses


def wait_until_running(rest: ConnectRest, name: str, deadline_s: float) -> ConnectorStatus:
    give_up = time.monotonic() + deadline_s
    while True:
        status = rest.status(name)
        if status is not None and status.running:
            return status
        if status is not None and "FAILED" in (status.state, *status.tasks):
            raise ServiceError(
                f"connector {name} failed: {_first_line(status.trace)}; "
                f"see {rest.url}/connectors/{name}/status"
            )
        if time.monotonic() > give_up:
            what = status.describe() if status else f"connector {name} is not registered"
            raise ServiceError(f"{what} after {deadline_s:.0f} s")
        time.sleep(0.5)


def _first_line(trace: str | None) -> str:
    return (trace or "no error reported").strip().splitlines()[0][:400]


# --- the local worker ----------------------------------------------------------------------


class LocalConnect:
    """The Connect worker of one state directory."""

    def __init__(self, settings: Settings) -> None:
        connect = _connect(settings)
        if connect.rest_url:
            raise ConfigError(
                f"profile '{settings.profile_name}' uses the Connect cluster at "
                f"{connect.rest_url}, which headwater does not start"
            )
        self.settings = settings
        self.connect = connect
        self.home = settings.state_dir / "connect"
        self.config_dir = Path(settings.resolve(connect.config_dir))
        self.jars_dir = Path(settings.resolve(connect.jars_dir))
        self.plugins_dir = Path(settings.resolve(connect.plugins_dir))
        self.rest = ConnectRest(f"http://127.0.0.1:{connect.port}")

    @property
    def pid_file(self) -> Path:
        return self.home / "worker.pid"

    @property
    def properties_file(self) -> Path:
        return self.home / "worker.properties"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def _pid(self) -> int | None:
        return owned_pid(self.pid_file, self.properties_file)

    def status(self) -> ConnectStatus:
        pid = self._pid()
        answering = pid is not None and self.rest.answers()
        return ConnectStatus(pid is not None, answering, pid, self.rest.url)

    def up(self) -> tuple[ConnectStatus, bool]:
        """Start the worker unless it runs; returns its status and whether this call started
        it. Raises ServiceError when the port is taken or it does not come up, and
        DependencyError when Java or the jars are missing."""
        if self._pid() is not None:
            self._wait_until_answering(None)
            return self.status(), False
        if port_in_use(self.connect.port):
            raise ServiceError(
                f"port {self.connect.port} on 127.0.0.1 is already in use by another program: "
                "stop it, or set kafka_connect.port to a free port in the profile"
            )
        java = require_java()
        classpath = self._classpath()
        self._write_config()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "console.log").open("ab") as console:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.connect.heap}",
                    f"-Xms{self.connect.heap}",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    f"-Dconnect.logs.dir={self.log_dir}",
                    f"-Dlog4j2.configurationFile={self._infra('log4j2.properties')}",
                    "-cp",
                    classpath,
                    WORKER_CLASS,
                    str(self.properties_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI; `headwater down` stops it
            )
        self.pid_file.write_text(str(process.pid))
        self._wait_until_answering(process)
        return self.status(), True

    def apply_connectors(self, deadline_s: float = RUNNING_DEADLINE_S) -> list[ConnectorStatus]:
        return apply_connectors(self.settings, self.rest, self.secrets_dir, deadline_s)

    def down(self) -> bool:
        """Stop the worker; returns whether one was running."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        give_up = time.monotonic() + STOP_DEADLINE_S
        while time.monotonic() < give_up and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    # --- helpers -----------------------------------------------------------------------

    def _wait_until_answering(self, process: subprocess.Popen[bytes] | None) -> None:
        give_up = time.monotonic() + START_DEADLINE_S
        while not self.rest.answers():
            if process is not None and process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"the Kafka Connect worker exited with status {process.returncode} while "
                    f"starting: see {self.log_dir / 'connect.log'} ({self._last_error()})"
                )
            if time.monotonic() > give_up:
                raise ServiceError(
                    f"the Kafka Connect worker did not answer at {self.rest.url} within "
                    f"{START_DEADLINE_S:.0f} s: see {self.log_dir / 'connect.log'}"
                )
            time.sleep(0.5)

    def _classpath(self) -> str:
        worker = sorted(self.jars_dir.glob("connect-runtime-*.jar"))
        plugin = sorted(self.plugins_dir.glob("debezium-connector-postgres/*.jar"))
        if not worker or not plugin:
            raise DependencyError(
                f"the Kafka Connect or Debezium jars are missing under {self.jars_dir.parent}: "
                "run `make jars`"
            )
        return f"{self.jars_dir}/*"

    def _infra(self, name: str) -> Path:
        path = self.config_dir / name
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: set kafka_connect.config_dir to the folder holding the "
                "worker's connect-distributed.properties.template and log4j2.properties "
                "(infra/connect/)"
            )
        return path

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.chmod(0o700)
        template = Template(self._infra("connect-distributed.properties.template").read_text())
        self.properties_file.write_text(
            template.substitute(
                bootstrap=self.settings.profile.kafka.bootstrap_servers,
                group_id=self.connect.group_id,
                port=self.connect.port,
                plugins=self.plugins_dir,
                secrets_dir=self.secrets_dir,
                security=worker_security(self.settings),
            )
        )
        self.properties_file.chmod(0o600)

    def _last_error(self) -> str:
        for log in (self.log_dir / "connect.log", self.log_dir / "console.log"):
            try:
                lines = log.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
            if errors:
                return errors[-1].strip()[:300]
        return "no error logged"


def worker_security(settings: Settings) -> str:
    """The worker's (and its producers' and consumers') Kafka security settings."""
    kafka = settings.profile.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return "# PLAINTEXT: no Kafka security settings"
    raise ConfigError(
        f"the local Kafka Connect worker supports PLAINTEXT Kafka only; profile "
        f"'{settings.profile_name}' uses {kafka.security_protocol}: run Connect yourself and "
        "set kafka_connect.rest_url"
    )
