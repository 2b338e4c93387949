"""The embedded Kafka broker: single-node KRaft from the Maven-resolved jars, on 127.0.0.1.

`up` is idempotent (a running broker is left alone), waits until the broker answers and says
clearly when a port is taken; `down` stops it (SIGTERM, then SIGKILL after a deadline).
All its files live under <state_dir>/kafka/.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from streaming.config import KafkaSettings, LocalKafkaSettings, Settings
from streaming.errors import ConfigError, ServiceError
from streaming.kafka_client import broker_answers, wait_until_ready
from streaming.versions import broker_classpath, require_java

START_DEADLINE_S = 90.0
STOP_DEADLINE_S = 30.0


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    answering: bool
    pid: int | None
    bootstrap: str

    def describe(self) -> str:
        if self.running and self.answering:
            return f"kafka: running (pid {self.pid}) at {self.bootstrap}"
        if self.running:
            return f"kafka: process {self.pid} is alive but does not answer at {self.bootstrap}"
        return "kafka: stopped"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


CMDLINE_READS = 40  # 2 s of retries for a live process whose command line reads empty


def owned_pid(pid_file: Path, marker: Path) -> int | None:
    """The pid in `pid_file` when that process still runs with `marker` (its config file) on
    its command line; None otherwise: a recycled pid belongs to some other program.

    A live JVM's /proc command line reads empty now and then while it starts (seen for a
    Kafka node under load); only a zombie's stays empty, so an empty read is retried while
    the process lives.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    for _ in range(CMDLINE_READS):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if cmdline:
            return pid if str(marker).encode() in cmdline else None
        if not _alive(pid):
            return None
        time.sleep(0.05)
    return None


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64, unpadded.

    Like Kafka's own ``Uuid.randomUuid``, it never starts with ``-``: the
    storage tool's argument parser would take such an id for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafka:
    """The broker of one state directory."""

    def __init__(
        self,
        local: LocalKafkaSettings,
        state_dir: Path,
        config_dir: Path,
        jars_dir: Path,
    ) -> None:
        self.local = local
        self.home = state_dir / "kafka"
        self.config_dir = config_dir
        self.jars_dir = jars_dir
        self.kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{local.port}")

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        """The broker the profile describes; ConfigError when it has no local_kafka block."""
        local = settings.profile.local_kafka
        if local is None:
            raise ConfigError(
                f"profile '{settings.profile_name}' has no local_kafka block: it uses an external "
                f"Kafka at {settings.profile.kafka.bootstrap_servers}, which headwater does not start"
            )
        return cls(
            local,
            settings.state_dir,
            Path(settings.resolve(local.config_dir)),
            Path(settings.resolve(local.jars_dir)),
        )

    # --- files -------------------------------------------------------------------------

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def console_log(self) -> Path:
        return self.log_dir / "console.log"

    def _pid(self) -> int | None:
        return owned_pid(self.pid_file, self.properties_file)

    # --- lifecycle ---------------------------------------------------------------------

    def status(self) -> BrokerStatus:
        pid = self._pid()
        answering = pid is not None and broker_answers(self.kafka, timeout_s=2.0)
        return BrokerStatus(pid is not None, answering, pid, self.kafka.bootstrap_servers)

    def up(self) -> tuple[BrokerStatus, bool]:
        """Start the broker unless it runs; returns its status and whether this call started it.

        Raises ServiceError when a port is taken or the broker does not come up, and
        DependencyError when Java or the broker jars are missing.
        """
        if self._pid() is not None:
            wait_until_ready(self.kafka, START_DEADLINE_S)
            return self.status(), False
        for port, what in (
            (self.local.port, "port"),
            (self.local.controller_port, "controller_port"),
        ):
            if port_in_use(port):
                raise ServiceError(
                    f"port {port} on 127.0.0.1 is already in use by another program: stop it, "
                    f"or set local_kafka.{what} to a free port in the profile"
                )
        java = require_java()
        classpath = broker_classpath(self.jars_dir)
        self._write_config()
        if not (self.data_dir / "meta.properties").is_file():
            self._format(java, classpath)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("ab") as console:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.local.heap}",
                    f"-Xms{self.local.heap}",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    f"-Dkafka.logs.dir={self.log_dir}",
                    f"-Dlog4j2.configurationFile={self._infra('log4j2.properties')}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(self.properties_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI; `headwater down` stops it
            )
        self.pid_file.write_text(str(process.pid))
        give_up = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < give_up:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"the Kafka broker exited with status {process.returncode} while starting: "
                    f"see {self.log_dir / 'server.log'} ({self._last_error()})"
                )
            if broker_answers(self.kafka, timeout_s=1.0):
                return self.status(), True
            time.sleep(0.3)
        self.down()
        raise ServiceError(
            f"the Kafka broker did not answer within {START_DEADLINE_S:.0f} s: "
            f"see {self.log_dir / 'server.log'}"
        )

    def down(self) -> bool:
        """Stop the broker; returns whether one was running."""
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

    def _infra(self, name: str) -> Path:
        path = self.config_dir / name
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: set local_kafka.config_dir to the folder holding the "
                "broker's server.properties.template and log4j2.properties (infra/kafka/)"
            )
        return path

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        template = Template(self._infra("server.properties.template").read_text())
        self.properties_file.write_text(
            template.substitute(
                port=self.local.port,
                controller_port=self.local.controller_port,
                data_dir=self.data_dir,
            )
        )

    def _format(self, java: str, classpath: str) -> None:
        cluster_id = new_cluster_id()
        done = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.properties_file),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(
                f"formatting Kafka's storage in {self.data_dir} failed: "
                f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}"
            )

    def _last_error(self) -> str:
        for log in (self.log_dir / "server.log", self.console_log):
            try:
                lines = log.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
            if errors:
                return errors[-1].strip()[:300]
        return "no error logged"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (started by this very process) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True
