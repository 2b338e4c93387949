"""A Spark standalone cluster on 127.0.0.1: a master and its workers, started from the pyspark
distribution's `spark-class`, for `spark-submit --master spark://127.0.0.1:<port>`.

`up` is idempotent (running daemons are left alone), says clearly when a port is taken, and
waits until the master's web UI lists every worker ALIVE; `down` stops the workers (and their
executors), then the master. All its files live under <state_dir>/spark-cluster/: a properties
file, a pid file and a log per daemon, and the workers' work directories (executor logs).
Nothing listens beyond loopback: every daemon and the drivers submitted to it bind 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspark

from devstack.services.kafka_broker import _alive, owned_pid, port_in_use
from streaming.config import LocalSparkClusterSettings, Settings
from streaming.errors import ConfigError, ServiceError
from streaming.versions import require_java

START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 30.0
HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class ClusterStatus:
    master_pid: int | None
    worker_pids: tuple[int | None, ...]
    alive_workers: int
    master_url: str
    webui_url: str
    apps: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def answering(self) -> bool:
        """The master answers and every configured worker is ALIVE with it."""
        return self.master_pid is not None and self.alive_workers >= len(self.worker_pids)

    def describe(self) -> str:
        workers = len(self.worker_pids)
        if self.answering:
            return (
                f"spark: master (pid {self.master_pid}) at {self.master_url} with "
                f"{self.alive_workers} workers ALIVE; web UI {self.webui_url}"
            )
        if self.master_pid is not None:
            return (
                f"spark: master (pid {self.master_pid}) at {self.master_url} has "
                f"{self.alive_workers} of {workers} workers ALIVE"
            )
        running = sum(pid is not None for pid in self.worker_pids)
        return "spark: stopped" + (f" ({running} workers left running)" if running else "")


class SparkStandalone:
    """The standalone cluster of one state directory."""

    def __init__(self, local: LocalSparkClusterSettings, state_dir: Path) -> None:
        self.local = local
        self.home = state_dir / "spark-cluster"
        self._started: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SparkStandalone:
        """The cluster the profile describes; ConfigError when it has no local_spark_cluster."""
        local = settings.profile.local_spark_cluster
        if local is None:
            raise ConfigError(
                f"profile '{settings.profile_name}' has no local_spark_cluster block: add one "
                "(master_port, webui_port, workers, worker_cores, worker_memory) for "
                "`headwater cluster up` to run a Spark standalone cluster on this machine"
            )
        return cls(local, settings.state_dir)

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.local.master_port}"

    @property
    def webui_url(self) -> str:
        return f"http://{HOST}:{self.local.webui_port}"

    # --- what a driver needs to use it -------------------------------------------------

    def submit_conf(self) -> dict[str, str]:
        """spark-submit settings of an application on this cluster: the driver on loopback
        (the executors run here too), one executor per worker sized to fit it, and this
        virtualenv's Python for any Python the executors run (it imports `streaming`)."""
        return {
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.executor.cores": str(self.local.worker_cores),
            "spark.executor.memory": self.local.worker_memory,
            "spark.cores.max": str(self.local.workers * self.local.worker_cores),
            "spark.pyspark.python": sys.executable,
        }

    def submit_env(self) -> dict[str, str]:
        """Environment of spark-submit for this cluster: the driver's web UI and block
        manager bind 127.0.0.1 (Spark's UIs bind SPARK_LOCAL_IP, else every interface)."""
        return {"SPARK_LOCAL_IP": HOST, "PYSPARK_PYTHON": sys.executable}

    def submit_command(self, settings: Settings, job: str, *, available_now: bool) -> list[str]:
        """The spark-submit command line of streaming/jobs/<job>.py on this cluster."""
        from streaming.deploy import submit_command

        return submit_command(
            settings,
            job,
            available_now=available_now,
            master=self.master_url,
            conf=self.submit_conf(),
        )

    # --- files -------------------------------------------------------------------------

    def _daemons(self) -> list[str]:
        return ["master", *(f"worker-{n}" for n in range(1, self.local.workers + 1))]

    def _properties(self, daemon: str) -> Path:
        return self.home / f"{daemon}.properties"

    def _pid_file(self, daemon: str) -> Path:
        return self.home / f"{daemon}.pid"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def _log(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    def work_dir(self, worker: int) -> Path:
        """Where worker `worker` (1-based) keeps its executors' files and logs."""
        return self.home / f"work-{worker}"

    def _pid(self, daemon: str) -> int | None:
        return owned_pid(self._pid_file(daemon), self._properties(daemon))

    # --- the master's view -------------------------------------------------------------

    def master_state(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The master's web UI JSON (workers, active and completed applications), or None
        when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=timeout_s) as reply:
                state = json.loads(reply.read())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def status(self) -> ClusterStatus:
        master = self._pid("master")
        workers = tuple(self._pid(d) for d in self._daemons()[1:])
        state = self.master_state() if master is not None else None
        alive = _alive_workers(state)
        apps = tuple((state or {}).get("activeapps", [])) + tuple(
            (state or {}).get("completedapps", [])
        )
        return ClusterStatus(master, workers, alive, self.master_url, self.webui_url, apps)

    # --- lifecycle ---------------------------------------------------------------------

    def up(self) -> tuple[ClusterStatus, bool]:
        """Start the master and the workers that do not run; returns the status and whether
        this call started anything.

        Raises ServiceError when a port is taken or the cluster does not come up within
        START_DEADLINE_S (quoting the last error its logs hold), DependencyError without Java.
        """
        status = self.status()
        if status.answering:
            return status, False
        require_java()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        give_up = time.monotonic() + START_DEADLINE_S
        if self._pid("master") is None:
            for port, what in (
                (self.local.master_port, "master_port"),
                (self.local.webui_port, "webui_port"),
            ):
                if port_in_use(port):
                    raise ServiceError(
                        f"port {port} on {HOST} is already in use by another program: stop it, "
                        f"or set local_spark_cluster.{what} to a free port in the profile"
                    )
            self._start(
                "master",
                [
                    MASTER_CLASS,
                    "--host",
                    HOST,
                    "--port",
                    str(self.local.master_port),
                    "--webui-port",
                    str(self.local.webui_port),
                ],
                {"spark.master.rest.enabled": "false"},
            )
            self._wait(give_up, lambda state: state.get("status") == "ALIVE", "the master")
        for n, daemon in enumerate(self._daemons()[1:], start=1):
            if self._pid(daemon) is None:
                self.work_dir(n).mkdir(exist_ok=True)
                self._start(
                    daemon,
                    [
                        WORKER_CLASS,
                        self.master_url,
                        "--host",
                        HOST,
                        "--cores",
                        str(self.local.worker_cores),
                        "--memory",
                        self.local.worker_memory,
                        "--webui-port",
                        "0",
                        "--work-dir",
                        str(self.work_dir(n)),
                    ],
                    {},
                )
        workers = self.local.workers
        self._wait(give_up, lambda state: _alive_workers(state) >= workers, f"{workers} workers")
        return self.status(), True

    def down(self) -> bool:
        """Stop the workers (their executors with them), then the master; returns whether
        anything was running."""
        stopped = False
        for daemon in reversed(self._daemons()):
            pid = self._pid(daemon)
            started = self._started.pop(daemon, None)
            if pid is None and started is not None and started.poll() is None:
                pid = started.pid  # started by this object, maybe not yet exec'd into java
            self._pid_file(daemon).unlink(missing_ok=True)
            if pid is None:
                continue
            stopped = True
            # Each daemon leads a process group of its own, its executors included.
            _signal_group(pid, signal.SIGTERM)
            give_up = time.monotonic() + STOP_DEADLINE_S
            while time.monotonic() < give_up and _alive(pid):
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        return stopped

    # --- helpers -----------------------------------------------------------------------

    def _start(self, daemon: str, arguments: list[str], properties: Mapping[str, str]) -> None:
        properties_file = self._properties(daemon)
        properties_file.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        spark_home = Path(pyspark.__file__).resolve().parent
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home),
            # The web UIs bind SPARK_LOCAL_IP, else every interface.
            "SPARK_LOCAL_IP": HOST,
            "SPARK_DAEMON_MEMORY": self.local.daemon_heap,
            # No spark-env.sh or spark-defaults.conf of the machine's.
            "SPARK_CONF_DIR": str(self.home),
        }
        with self._log(daemon).open("ab") as log:
            process = subprocess.Popen(
                [
                    str(spark_home / "bin" / "spark-class"),
                    *arguments,
                    "--properties-file",
                    str(properties_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.home,
                start_new_session=True,  # survives the CLI; `headwater cluster down` stops it
            )
        # spark-class execs java: this pid is the daemon's JVM.
        self._pid_file(daemon).write_text(str(process.pid))
        self._started[daemon] = process

    def _wait(self, give_up: float, ready: Callable[[Mapping[str, Any]], bool], what: str) -> None:
        while time.monotonic() < give_up:
            for daemon, process in self._started.items():
                if process.poll() is not None:
                    self.down()
                    raise ServiceError(
                        f"the Spark {daemon} exited with status {process.returncode} while "
                        f"starting: see {self._log(daemon)} ({self._last_error()})"
                    )
            state = self.master_state(timeout_s=1.0)
            if state is not None and ready(state):
                return
            time.sleep(0.3)
        self.down()
        raise ServiceError(
            f"the Spark standalone cluster did not report {what} ALIVE at {self.webui_url}/json/ "
            f"within {START_DEADLINE_S:.0f} s: see {self.log_dir} ({self._last_error()})"
        )

    def _last_error(self) -> str:
        for daemon in self._daemons():
            try:
                lines = self._log(daemon).read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
            if errors:
                return f"{daemon}: {errors[-1].strip()[:300]}"
        return "no error logged"


def _alive_workers(state: Mapping[str, Any] | None) -> int:
    return sum(w.get("state") == "ALIVE" for w in (state or {}).get("workers", []))


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
