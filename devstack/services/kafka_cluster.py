"""A real Kafka cluster on loopback: N KRaft nodes, each broker and controller, from the
Maven-resolved broker jars.

Every node has its own data, logs, config and pid file under
<state_dir>/kafka-cluster/node-<id>/; the controller quorum is all N nodes. Topics get three
copies and need two in sync (offsets and transaction state too), so one node may stop without
losing data or writes.

Secured (the default), clients reach the CLIENT listeners over SASL_SSL with SCRAM-SHA-512:
the certificate comes from a local CA (devstack.services.tls), the one SCRAM user is written
into the metadata when the storage is formatted, and its generated password is kept only in
<state_dir>/kafka-cluster/credentials.json (mode 0600). Replication between the brokers uses
an INTERNAL listener and the quorum a CONTROLLER listener, both PLAINTEXT on 127.0.0.1: on one
machine they are no more exposed than the files the brokers write, and this way no broker
needs a password of its own in its config, and the two small cores spend no time on TLS for
replication traffic. A cluster spanning machines would run them over SASL_SSL too.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from devstack.services.kafka_broker import _alive, new_cluster_id, owned_pid, port_in_use
from devstack.services.tls import Certificates, ensure_certificates, write_file
from streaming.config import KafkaSettings, SaslSettings, Settings
from streaming.errors import ConfigError, ServiceError
from streaming.kafka_client import client_config
from streaming.versions import broker_classpath, require_java

START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 30.0
MECHANISM = "SCRAM-SHA-512"
# The names of the environment variables `client_environ` fills, as a profile's sasl block
# names them (conf/profiles/cluster.yaml).
USERNAME_ENV = "HEADWATER_KAFKA_USERNAME"
PASSWORD_ENV = "HEADWATER_KAFKA_PASSWORD"


@dataclass(frozen=True)
class NodePorts:
    """The loopback ports of one node: clients, replication between brokers, the quorum."""

    client: int
    internal: int
    controller: int


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    pid: int | None
    answering: bool
    bootstrap: str

    @property
    def running(self) -> bool:
        return self.pid is not None

    def describe(self) -> str:
        if self.running and self.answering:
            return f"kafka node {self.node_id}: running (pid {self.pid}) at {self.bootstrap}"
        if self.running:
            return (
                f"kafka node {self.node_id}: process {self.pid} is alive but does not answer "
                f"at {self.bootstrap}"
            )
        return f"kafka node {self.node_id}: stopped"


@dataclass(frozen=True)
class ClusterStatus:
    nodes: tuple[NodeStatus, ...]

    @property
    def healthy(self) -> bool:
        return all(n.running and n.answering for n in self.nodes)

    def describe(self) -> list[str]:
        return [n.describe() for n in self.nodes]


class KafkaCluster:
    """The loopback KRaft cluster of one state directory."""

    def __init__(
        self,
        state_dir: Path,
        ports: Sequence[NodePorts],
        *,
        jars_dir: Path,
        config_dir: Path,
        heap: str = "384m",
        secured: bool = True,
        username: str = "headwater",
        replication_factor: int = 3,
        min_insync_replicas: int = 2,
    ) -> None:
        if not ports:
            raise ConfigError("a Kafka cluster needs at least one node")
        every_port = [p for node in ports for p in (node.client, node.internal, node.controller)]
        if len(set(every_port)) != len(every_port):
            raise ConfigError(f"the cluster's nodes need distinct ports, got {every_port}")
        if not 1 <= min_insync_replicas <= replication_factor <= len(ports):
            raise ConfigError(
                f"min_insync_replicas {min_insync_replicas} <= replication_factor "
                f"{replication_factor} <= nodes {len(ports)} does not hold"
            )
        self.home = state_dir / "kafka-cluster"
        self.ports = tuple(ports)
        self.jars_dir = jars_dir
        self.config_dir = config_dir
        self.heap = heap
        self.secured = secured
        self.username = username
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaCluster:
        """The cluster the profile's local_kafka_cluster describes (secured, three copies of
        every topic, two in sync); ConfigError when the profile has no such block."""
        local = settings.profile.local_kafka_cluster
        if local is None:
            raise ConfigError(
                f"profile '{settings.profile_name}' has no local_kafka_cluster block: add one "
                "(nodes, first_port, heap) for `headwater cluster up` to run a Kafka cluster "
                "on this machine, or use the profile local-cluster"
            )
        first = local.first_port
        return cls(
            settings.state_dir,
            [
                NodePorts(first + 3 * i, first + 3 * i + 1, first + 3 * i + 2)
                for i in range(local.nodes)
            ],
            jars_dir=Path(settings.resolve(local.jars_dir)),
            config_dir=Path(settings.resolve(local.config_dir)),
            heap=local.heap,
        )

    # --- what clients need ---------------------------------------------------------------

    @property
    def node_ids(self) -> range:
        return range(1, len(self.ports) + 1)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{p.client}" for p in self.ports)

    @property
    def certificates(self) -> Certificates:
        return Certificates(
            self.home / "tls" / "ca.pem",
            self.home / "tls" / "ca-key.pem",
            self.home / "tls" / "server.pem",
        )

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials.json"

    def password(self) -> str:
        """The SCRAM password of the cluster's user; ServiceError before the first up()."""
        try:
            return str(json.loads(self.credentials_file.read_text())["password"])
        except (OSError, ValueError, KeyError):
            raise ServiceError(
                f"{self.credentials_file} is missing or unreadable: start the cluster first"
            ) from None

    def client_settings(
        self,
        username_env: str = USERNAME_ENV,
        password_env: str = PASSWORD_ENV,
        bootstrap_servers: str | None = None,
    ) -> KafkaSettings:
        """A profile's kafka block for this cluster, the credentials read from the named
        environment variables, topics with the cluster's replication."""
        if not self.secured:
            return KafkaSettings(
                bootstrap_servers=bootstrap_servers or self.bootstrap_servers,
                replication_factor=self.replication_factor,
                min_insync_replicas=self.min_insync_replicas,
            )
        return KafkaSettings(
            bootstrap_servers=bootstrap_servers or self.bootstrap_servers,
            security_protocol="SASL_SSL",
            sasl=SaslSettings(
                mechanism=MECHANISM, username_env=username_env, password_env=password_env
            ),
            ssl_ca_location=str(self.certificates.ca_cert),
            replication_factor=self.replication_factor,
            min_insync_replicas=self.min_insync_replicas,
        )

    def client_environ(
        self, username_env: str = USERNAME_ENV, password_env: str = PASSWORD_ENV
    ) -> dict[str, str]:
        """The environment variables `client_settings` names, with the cluster's credentials."""
        if not self.secured:
            return {}
        return {username_env: self.username, password_env: self.password()}

    # --- files ----------------------------------------------------------------------------

    def node_home(self, node_id: int) -> Path:
        return self.home / f"node-{node_id}"

    def _properties(self, node_id: int) -> Path:
        return self.node_home(node_id) / "server.properties"

    def _pid_file(self, node_id: int) -> Path:
        return self.node_home(node_id) / "node.pid"

    def _data_dir(self, node_id: int) -> Path:
        return self.node_home(node_id) / "data"

    def log_dir(self, node_id: int) -> Path:
        return self.node_home(node_id) / "logs"

    def _pid(self, node_id: int) -> int | None:
        return owned_pid(self._pid_file(node_id), self._properties(node_id))

    # --- lifecycle ------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Every node: its process and whether it answers on its client listener."""
        return ClusterStatus(
            tuple(
                NodeStatus(
                    n,
                    pid := self._pid(n),
                    pid is not None and self._answers(n, timeout_s=2.0),
                    f"127.0.0.1:{self.ports[n - 1].client}",
                )
                for n in self.node_ids
            )
        )

    def up(self) -> ClusterStatus:
        """Start the nodes that are not running and wait until every node answers and sees
        all the brokers.

        Raises ServiceError when a port is taken, a node dies while starting (quoting its
        last logged error) or the cluster does not answer in time; DependencyError when Java
        or the broker jars are missing.
        """
        to_start = [n for n in self.node_ids if self._pid(n) is None]
        for n in to_start:
            self._check_ports(n)
        java = require_java()
        classpath = broker_classpath(self.jars_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        cluster_id = self._cluster_id()
        if self.secured:
            ensure_certificates(self.home / "tls")
        for n in to_start:
            self._write_config(n)
            if not (self._data_dir(n) / "meta.properties").is_file():
                self._format(java, classpath, n, cluster_id)
        try:
            for n in to_start:
                self._spawn(java, classpath, n)
            self._wait_for(list(self.node_ids), watch=to_start)
        except BaseException:
            # A half-started cluster helps nobody: stop what this call started.
            for n in to_start:
                self.stop_node(n, kill=True)
            raise
        return self.status()

    def down(self) -> list[int]:
        """Stop every node (SIGTERM to all at once, SIGKILL after a deadline); returns the ids
        of the nodes that were running."""
        running = {n: pid for n in self.node_ids if (pid := self._pid(n)) is not None}
        for pid in running.values():
            os.kill(pid, signal.SIGTERM)
        give_up = time.monotonic() + STOP_DEADLINE_S
        while time.monotonic() < give_up and any(_alive(p) for p in running.values()):
            time.sleep(0.2)
        for n, pid in running.items():
            self._reap(n, pid)
        return sorted(running)

    def stop_node(self, node_id: int, *, kill: bool = False) -> bool:
        """Stop one node: SIGTERM (a controlled shutdown) or, with `kill`, SIGKILL (a crash).
        Returns whether it was running."""
        pid = self._pid(self._known(node_id))
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        give_up = time.monotonic() + STOP_DEADLINE_S
        while time.monotonic() < give_up and _alive(pid):
            time.sleep(0.1)
        self._reap(node_id, pid)
        return True

    def start_node(self, node_id: int) -> NodeStatus:
        """Start one stopped node (formatted before) and wait until it answers and the
        cluster sees all its brokers again."""
        n = self._known(node_id)
        if self._pid(n) is None:
            self._check_ports(n)
            java = require_java()
            classpath = broker_classpath(self.jars_dir)
            self._write_config(n)
            if not (self._data_dir(n) / "meta.properties").is_file():
                self._format(java, classpath, n, self._cluster_id())
            self._spawn(java, classpath, n)
        self._wait_for([n], watch=[n])
        return self.status().nodes[n - 1]

    # --- helpers --------------------------------------------------------------------------

    def _known(self, node_id: int) -> int:
        if node_id not in self.node_ids:
            raise ConfigError(f"the cluster has nodes {list(self.node_ids)}, not {node_id}")
        return node_id

    def _check_ports(self, n: int) -> None:
        ports = self.ports[n - 1]
        for port, what in (
            (ports.client, "client"),
            (ports.internal, "internal"),
            (ports.controller, "controller"),
        ):
            if port_in_use(port):
                raise ServiceError(
                    f"port {port} on 127.0.0.1 (the {what} port of Kafka node {n}) is already "
                    "in use by another program: stop it, or give the cluster other ports"
                )

    def _infra(self, name: str) -> Path:
        path = self.config_dir / name
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: the cluster's config_dir must hold "
                "cluster-node.properties.template and log4j2.properties (infra/kafka/)"
            )
        return path

    def _cluster_id(self) -> str:
        """The cluster's id, made (with the user's password) when the cluster is new."""
        id_file = self.home / "cluster.id"
        if id_file.is_file():
            return id_file.read_text().strip()
        cluster_id = new_cluster_id()
        if self.secured:
            write_file(
                self.credentials_file,
                json.dumps(
                    {"username": self.username, "password": secrets.token_urlsafe(24)}
                ).encode(),
                secret=True,
            )
        id_file.write_text(cluster_id)
        return cluster_id

    def _write_config(self, n: int) -> None:
        home = self.node_home(n)
        home.mkdir(parents=True, exist_ok=True)
        ports = self.ports[n - 1]
        security = ""
        if self.secured:
            keystore = self.certificates.server
            security = "\n".join(
                [
                    f"sasl.enabled.mechanisms={MECHANISM}",
                    # The server side of SCRAM takes no options: the users are in the metadata.
                    f"listener.name.client.{MECHANISM.lower()}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                    "listener.name.client.ssl.keystore.type=PEM",
                    f"listener.name.client.ssl.keystore.location={keystore}",
                    "listener.name.client.ssl.client.auth=none",
                ]
            )
        template = Template(self._infra("cluster-node.properties.template").read_text())
        self._properties(n).write_text(
            template.substitute(
                node_id=n,
                voters=",".join(
                    f"{i}@127.0.0.1:{p.controller}"
                    for i, p in zip(self.node_ids, self.ports, strict=True)
                ),
                client_port=ports.client,
                internal_port=ports.internal,
                controller_port=ports.controller,
                client_protocol="SASL_SSL" if self.secured else "PLAINTEXT",
                security=security,
                data_dir=self._data_dir(n),
                replication_factor=self.replication_factor,
                min_insync_replicas=self.min_insync_replicas,
            )
        )

    def _format(self, java: str, classpath: str, n: int, cluster_id: str) -> None:
        command = [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self._properties(n)),
        ]
        password = None
        if self.secured:
            password = self.password()
            # The SCRAM user goes into the bootstrap metadata, so it exists from the first
            # start on. The argument is visible to this machine's users while the tool runs
            # (a second or two); the storage holds only the salted SCRAM hash.
            command += ["--add-scram", f"{MECHANISM}=[name={self.username},password={password}]"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise ServiceError(
                f"formatting the storage of Kafka node {n} in {self._data_dir(n)} failed: "
                f"{_redact(' '.join(last), password)}"
            )

    def _spawn(self, java: str, classpath: str, n: int) -> None:
        log_dir = self.log_dir(n)
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / "console.log").open("ab") as console:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.heap}",
                    f"-Xms{self.heap}",
                    "-XX:+UseSerialGC",  # small heaps on a small machine: one GC thread
                    "-XX:TieredStopAtLevel=1",  # starts in half the time; fast enough here
                    "-Djava.awt.headless=true",
                    f"-Dkafka.logs.dir={log_dir}",
                    f"-Dlog4j2.configurationFile={self._infra('log4j2.properties')}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(self._properties(n)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes[n] = process
        self._pid_file(n).write_text(str(process.pid))

    def _running(self, n: int) -> bool:
        """Whether node `n` runs: a child this object started by its exit status (which,
        unlike its /proc entry, cannot read wrong), any other by its pid file."""
        process = self._processes.get(n)
        if process is not None:
            return process.poll() is None
        return self._pid(n) is not None

    def _wait_for(self, nodes: Sequence[int], *, watch: Sequence[int]) -> None:
        """Wait until each of `nodes` answers and sees every broker; `watch` are the nodes
        this call started, whose death ends the wait at once."""
        give_up = time.monotonic() + START_DEADLINE_S
        waiting = list(nodes)
        while waiting:
            for n in watch:
                if self._running(n):
                    continue
                self._pid_file(n).unlink(missing_ok=True)
                process = self._processes.pop(n, None)
                status = f" with status {process.returncode}" if process is not None else ""
                raise ServiceError(
                    f"Kafka node {n} exited{status} while starting: see "
                    f"{self.log_dir(n) / 'server.log'} ({self._last_error(n)})"
                )
            waiting = [n for n in waiting if not self._answers(n, timeout_s=2.0, all_brokers=True)]
            if waiting and time.monotonic() > give_up:
                raise ServiceError(
                    f"Kafka nodes {waiting} did not answer within {START_DEADLINE_S:.0f} s: see "
                    f"{self.log_dir(waiting[0]) / 'server.log'} ({self._last_error(waiting[0])})"
                )
            if waiting:
                time.sleep(0.5)

    def _answers(self, n: int, *, timeout_s: float, all_brokers: bool = False) -> bool:
        """True when node `n` returns metadata on its client listener (naming every broker of
        the cluster, with `all_brokers`)."""
        kafka = self.client_settings(bootstrap_servers=f"127.0.0.1:{self.ports[n - 1].client}")
        try:
            conf = client_config(kafka, self.client_environ())
        except (ConfigError, ServiceError):
            return False
        try:
            brokers = AdminClient(conf).list_topics(timeout=timeout_s).brokers
        except KafkaException:
            return False
        return not all_brokers or set(brokers) == set(self.node_ids)

    def _reap(self, n: int, pid: int) -> None:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        process = self._processes.pop(n, None)
        if process is not None:
            process.wait()
        self._pid_file(n).unlink(missing_ok=True)

    def _last_error(self, n: int) -> str:
        password = self.password() if self.credentials_file.is_file() else None
        for log in (self.log_dir(n) / "server.log", self.log_dir(n) / "console.log"):
            try:
                lines = log.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            # Kafka's own ERROR lines and exceptions, or the JVM's (which dies before
            # log4j starts when, say, the heap is too small).
            errors = [ln for ln in lines if any(w in ln for w in (" ERROR ", "Exception", "Error"))]
            if errors:
                return _redact(errors[-1].strip()[:300], password)
        return "no error logged"


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
