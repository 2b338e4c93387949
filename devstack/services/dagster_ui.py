"""The Dagster UI of the demo: `dagster dev` (webserver and daemon) as a subprocess.

streaming/ never imports Dagster; it only launches its command line, from the checkout that
holds pyproject.toml's `[tool.dagster]` (the code location `headwater`). Its instance lives in
<state_dir>/dagster (DAGSTER_HOME), its dagster.yaml is generated from the profile
(devstack.services.dagster_instance: local storage, or the profile's PostgreSQL), its output
goes to <state_dir>/dagster/dagster-dev.log.
`start` says clearly when the port is taken; `wait_until_answering` polls the webserver with a
deadline; `stop` sends SIGTERM to its process group, then SIGKILL after a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from devstack.services.dagster_instance import (
    check_storage_secrets,
    dagster_environment,
    dagster_home,
    instance_yaml,
    write_instance_yaml,
)
from devstack.services.kafka_broker import port_in_use
from streaming.config import DagsterStorageSettings, DagsterUiSettings, Settings
from streaming.errors import ServiceError

HOST = "127.0.0.1"
START_DEADLINE_S = 300.0  # a cold `dagster dev` takes ~50 s on 2 cores, ~2 min when they are busy
STOP_DEADLINE_S = 30.0
LOG_NAME = "dagster-dev.log"
UI_NICENESS = 10


def code_root() -> Path:
    """The checkout whose pyproject.toml names the code location (`[tool.dagster]`)."""
    return Path(__file__).resolve().parents[2]


class DagsterUi:
    """One `dagster dev` process group, serving http://127.0.0.1:<port>."""

    def __init__(
        self,
        ui: DagsterUiSettings,
        home: Path,
        env: Mapping[str, str],
        cwd: Path | None = None,
        command: list[str] | None = None,
        storage: DagsterStorageSettings | None = None,
    ) -> None:
        self.port = ui.port
        self.storage = storage
        self.home = home
        self.env = dict(env)
        self.cwd = cwd or code_root()
        self.command = command or self._dagster_dev()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DagsterUi:
        """The UI the profile describes, loading the same conf and profile as the caller.

        Raises ConfigError naming the variable when the profile's Dagster storage needs a
        password that is not set: before anything starts.
        """
        storage = settings.profile.dagster_storage
        env = dagster_environment(settings)
        check_storage_secrets(storage, env)
        home = dagster_home(settings)
        return cls(settings.profile.dagster_ui, home, env, storage=storage)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / LOG_NAME

    def _dagster_dev(self) -> list[str]:
        command = [sys.executable, "-m", "dagster", "dev", "-h", HOST, "-p", str(self.port)]
        if not (self.cwd / "pyproject.toml").is_file():
            # An installed (not checked-out) headwater: name the code location's module.
            command += ["-m", "orchestration.definitions"]
        nice = shutil.which("nice")
        # The streams come first: on a small machine the UI's start-up (four Python
        # processes) would otherwise slow Spark's.
        return [nice, "-n", str(UI_NICENESS), *command] if nice else command

    def check_port(self) -> None:
        """Raises ServiceError with what to do when the port is taken."""
        if port_in_use(self.port, HOST):
            raise ServiceError(
                f"port {self.port} on {HOST} is already in use (another Dagster UI?): stop that "
                f"program, set dagster_ui.port to a free port in the profile, or run the demo "
                f"with --no-ui"
            )

    def start(self) -> None:
        """Launch `dagster dev` in its own process group; returns without waiting.

        Raises ServiceError when the port is taken, ConfigError when the storage's password
        is not set.
        """
        self.check_port()
        check_storage_secrets(self.storage, self.env)
        write_instance_yaml(self.home, instance_yaml(self.storage))
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: `stop` ends the webserver and daemon too
            )
        self.started_at = time.monotonic()

    def answers(self, timeout_s: float = 2.0) -> bool:
        """True when the webserver answers GET /server_info."""
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=timeout_s) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_answering(
        self, deadline_s: float = START_DEADLINE_S, stop: Callable[[], bool] | None = None
    ) -> bool:
        """Poll the webserver until it answers; False when `stop()` turned true first.

        Raises ServiceError when `dagster dev` exits or does not answer within `deadline_s`.
        """
        if self.process is None:
            raise ServiceError("the Dagster UI was not started")
        give_up = time.monotonic() + deadline_s
        while time.monotonic() < give_up:
            if stop is not None and stop():
                return False
            if self.process.poll() is not None:
                raise ServiceError(
                    f"the Dagster UI (dagster dev) exited with status {self.process.returncode} "
                    f"while starting: see {self.log_file}"
                )
            if self.answers():
                return True
            time.sleep(0.5)
        raise ServiceError(
            f"the Dagster UI did not answer at {self.url} within {deadline_s:.0f} s: see "
            f"{self.log_file}, or run the demo with --no-ui"
        )

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left after `deadline_s`."""
        process = self.process
        if process is None:
            return
        group = process.pid  # the leader of its own session and group
        _signal_group(group, signal.SIGTERM)
        give_up = time.monotonic() + deadline_s
        while time.monotonic() < give_up and (process.poll() is None or _group_alive(group)):
            time.sleep(0.2)
        if process.poll() is None or _group_alive(group):
            _signal_group(group, signal.SIGKILL)
            process.wait()
            kill_deadline = time.monotonic() + 10.0
            while _group_alive(group) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
        self.process = None


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
