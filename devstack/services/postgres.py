"""The source database: a project-owned PostgreSQL cluster from Debian's packages, and the
credentials headwater uses to reach any PostgreSQL (local or not).

`LocalPostgres.up` is idempotent: the first call runs initdb under <state_dir>/postgres/data
(wal_level=logical, loopback only, scram-sha-256, passwords generated into a 0600 file), every
call starts the server when it is down, waits until it answers, and makes sure the demo
database, its roles, tables and the publication Debezium reads exist. `down` stops it
(pg_ctl stop -m fast). Run as root, the server runs as Debian's `postgres` user (PostgreSQL
refuses to run as root).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from devstack.services.kafka_broker import port_in_use
from streaming.config import LocalPostgresSettings, PostgresSettings, Settings
from streaming.errors import ConfigError, DependencyError, ServiceError

if TYPE_CHECKING:
    import psycopg

START_DEADLINE_S = 90.0
CONNECT_TIMEOUT_S = 5
SUPERUSER = "postgres"
OS_USER = "postgres"  # Debian's packages create it
Role = Literal["superuser", "user", "replication"]


@dataclass(frozen=True)
class PostgresStatus:
    running: bool
    answering: bool
    pid: int | None
    address: str

    def describe(self) -> str:
        if self.running and self.answering:
            return f"postgres: running (pid {self.pid}) at {self.address}"
        if self.running:
            return f"postgres: process {self.pid} is alive but does not answer at {self.address}"
        return "postgres: stopped"


def credentials_file(settings: Settings) -> Path:
    """Where the local cluster keeps the passwords it generated (mode 0600)."""
    return settings.state_dir / "postgres" / "credentials.json"


def password(settings: Settings, role: Role) -> str:
    """The password of `role` from the environment variable the profile names, or else from
    the local cluster's credentials file. Raises ConfigError saying what to set."""
    pg = _postgres(settings)
    env = {
        "user": pg.password_env,
        "replication": pg.replication_password_env,
        "superuser": None,
    }[role]
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"environment variable {env} (postgres, {role} password) is not set")
        return value
    if settings.profile.local_postgres is None:
        raise ConfigError(
            f"profile '{settings.profile_name}' gives no password for the postgres {role}: set "
            f"postgres.{'password_env' if role == 'user' else 'replication_password_env'}"
        )
    try:
        return str(json.loads(credentials_file(settings).read_text())[role])
    except (FileNotFoundError, KeyError, ValueError):
        raise ServiceError(
            "the local PostgreSQL cluster is not initialised: run `headwater up`"
        ) from None


def connect(
    settings: Settings, role: Role = "user", database: str | None = None
) -> psycopg.Connection:
    """A connection to the profile's PostgreSQL as `role` (autocommit off)."""
    import psycopg

    pg = _postgres(settings)
    login = {"user": pg.user, "replication": pg.replication_user, "superuser": SUPERUSER}[role]
    try:
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            dbname=database or pg.database,
            user=login,
            password=password(settings, role),
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="headwater",
        )
    except psycopg.OperationalError as exc:
        raise ServiceError(
            f"cannot connect to PostgreSQL at {pg.host}:{pg.port} as {login}: "
            f"{str(exc).strip().splitlines()[-1]}"
        ) from None


def _postgres(settings: Settings) -> PostgresSettings:
    if settings.profile.postgres is None:
        raise ConfigError(
            f"profile '{settings.profile_name}' has no 'postgres' block: add one (host, port, "
            "database, users) to use change data capture from PostgreSQL"
        )
    return settings.profile.postgres


def server_bin_dir(local: LocalPostgresSettings) -> Path:
    """PostgreSQL's server programs (initdb, pg_ctl): the configured folder, else the newest
    of Debian's /usr/lib/postgresql/<version>/bin. Raises DependencyError when missing."""
    if local.bin_dir:
        candidates = [Path(local.bin_dir)]
    else:
        found = Path("/usr/lib/postgresql").glob("*/bin")
        candidates = sorted(found, key=lambda p: _major(p.parent.name), reverse=True)
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir
    raise DependencyError(
        "PostgreSQL's server programs (initdb, pg_ctl) were not found: run `make setup` "
        "(as root it installs Debian's postgresql), or set local_postgres.bin_dir"
    )


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


class LocalPostgres:
    """The cluster of one state directory, serving the profile's `postgres` block."""

    def __init__(self, settings: Settings) -> None:
        local = settings.profile.local_postgres
        if local is None:
            raise ConfigError(
                f"profile '{settings.profile_name}' has no local_postgres block: it uses the "
                f"PostgreSQL at {_postgres(settings).host}:{_postgres(settings).port}, which "
                "headwater does not start"
            )
        self.settings = settings
        self.local = local
        self.pg = _postgres(settings)
        self.home = settings.state_dir / "postgres"
        self.schema_file = Path(settings.resolve(local.schema_file))

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def address(self) -> str:
        return f"{self.pg.host}:{self.pg.port}/{self.pg.database}"

    # --- lifecycle ---------------------------------------------------------------------

    def status(self) -> PostgresStatus:
        pid = self._pid()
        answering = pid is not None and self._answers()
        return PostgresStatus(pid is not None, answering, pid, self.address)

    def up(self) -> tuple[PostgresStatus, bool]:
        """Start the cluster unless it runs (initdb the first time) and make sure the demo
        database exists; returns its status and whether this call started it.

        Raises ServiceError when the port is taken or the server does not come up, and
        DependencyError when PostgreSQL's programs are missing.
        """
        started = False
        if self._pid() is None:
            bin_dir = server_bin_dir(self.local)
            if port_in_use(self.pg.port):
                raise ServiceError(
                    f"port {self.pg.port} on 127.0.0.1 is already in use by another program: "
                    "stop it, or set postgres.port to a free port in the profile"
                )
            if not (self.data_dir / "PG_VERSION").is_file():
                self._initdb(bin_dir)
            self._write_config()
            self._start(bin_dir)
            started = True
        self._wait_until_answering()
        self.ensure_database()
        return self.status(), started

    def down(self) -> bool:
        """Stop the cluster (fast: open transactions roll back); returns whether it ran."""
        if self._pid() is None:
            return False
        bin_dir = server_bin_dir(self.local)
        done = self._run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
        )
        if done.returncode != 0 and self._pid() is not None:
            raise ServiceError(f"pg_ctl could not stop PostgreSQL: {_last_line(done)}")
        return True

    def ensure_database(self) -> None:
        """The demo database, its roles, the schema file's tables and the publication, as the
        profile names them; safe to run again."""
        with connect(self.settings, "superuser", database="postgres") as admin:
            admin.autocommit = True
            create_roles(admin, self.settings)
            create_database(admin, self.pg)
        prepare_tables(self.settings, self.schema_file)

    # --- helpers -----------------------------------------------------------------------

    def _pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"postgres" in cmdline else None

    def _answers(self) -> bool:
        try:
            with connect(self.settings, "superuser", database="postgres") as conn:
                conn.execute("SELECT 1")
            return True
        except (ServiceError, ConfigError):
            return False

    def _wait_until_answering(self) -> None:
        give_up = time.monotonic() + START_DEADLINE_S
        while not self._answers():
            if self._pid() is None:
                raise ServiceError(
                    f"PostgreSQL exited while starting: see {self.log_file} ({self._last_error()})"
                )
            if time.monotonic() > give_up:
                raise ServiceError(
                    f"PostgreSQL did not answer at {self.address} within "
                    f"{START_DEADLINE_S:.0f} s: see {self.log_file}"
                )
            time.sleep(0.3)

    def _as_server_user(self) -> list[str]:
        """PostgreSQL refuses to run as root: run its programs as Debian's postgres user."""
        if os.geteuid() != 0:
            return []
        runuser = shutil.which("runuser")
        if runuser is None:
            raise DependencyError("runuser was not found: install util-linux")
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            raise DependencyError(
                f"the '{OS_USER}' user does not exist: install Debian's postgresql package "
                "(make setup), which creates it"
            ) from None
        return [runuser, "-u", OS_USER, "--"]

    def _run(self, command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_server_user(), *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
        )

    def _initdb(self, bin_dir: Path) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = {
            role: secrets.token_urlsafe(24) for role in ("superuser", "user", "replication")
        }
        credentials = credentials_file(self.settings)
        credentials.write_text(json.dumps(passwords))
        credentials.chmod(0o600)
        pwfile = self.home / "initdb.pw"
        pwfile.write_text(passwords["superuser"] + "\n")
        if os.geteuid() == 0:
            self._hand_over(pwfile)
        try:
            done = self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceError(f"initdb failed in {self.data_dir}: {_last_line(done)}")

    def _hand_over(self, pwfile: Path) -> None:
        """Run as root: the postgres user must own the cluster's folder and reach it."""
        user = pwd.getpwnam(OS_USER)
        for path in (self.home, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        for parent in self.home.resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                raise ServiceError(
                    f"the '{OS_USER}' user cannot reach {self.home}: {parent} is closed to "
                    f"other users; run `chmod o+x {parent}` or set state_dir elsewhere"
                )

    def _write_config(self) -> None:
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        marker = "# --- headwater ---"
        text = text.split(marker, 1)[0]
        conf.write_text(
            text
            + f"""{marker}
listen_addresses = '127.0.0.1'
port = {self.pg.port}
unix_socket_directories = ''
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
shared_buffers = 64MB
"""
        )
        (self.data_dir / "pg_hba.conf").write_text(
            "# Written by headwater: loopback only, passwords (scram-sha-256).\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            f"host replication {self.pg.replication_user} 127.0.0.1/32 scram-sha-256\n"
        )

    def _start(self, bin_dir: Path) -> None:
        if os.geteuid() == 0:
            self.log_file.touch()
            user = pwd.getpwnam(OS_USER)
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
        done = self._run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(START_DEADLINE_S)),
                "start",
            ],
            timeout=START_DEADLINE_S + 30,
        )
        if done.returncode != 0:
            raise ServiceError(
                f"PostgreSQL did not start: see {self.log_file} ({self._last_error()})"
            )

    def _last_error(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except (FileNotFoundError, PermissionError):
            return "no log"
        errors = [ln for ln in lines if re.search(r"\b(FATAL|ERROR|PANIC)\b", ln)]
        return (errors or lines or ["empty log"])[-1].strip()[:300]


def create_roles(admin: psycopg.Connection, settings: Settings) -> None:
    """The owner and the replication login of the profile, with its passwords (as superuser)."""
    from psycopg import sql

    pg = _postgres(settings)
    for role, login, extra in (
        ("user", pg.user, sql.SQL("LOGIN")),
        ("replication", pg.replication_user, sql.SQL("LOGIN REPLICATION")),
    ):
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [login]).fetchone()
        admin.execute(
            sql.SQL("{} ROLE {} {} PASSWORD {}").format(
                sql.SQL("ALTER" if exists else "CREATE"),
                sql.Identifier(login),
                extra,
                sql.Literal(password(settings, role)),  # type: ignore[arg-type]
            )
        )


def create_database(admin: psycopg.Connection, pg: PostgresSettings) -> None:
    """The profile's database, owned by its user, unless it exists (as superuser)."""
    from psycopg import sql

    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [pg.database]).fetchone():
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(pg.database), sql.Identifier(pg.user)
            )
        )


def prepare_tables(settings: Settings, schema_file: Path) -> None:
    """Run the schema file as the tables' owner, then grant what Debezium needs."""
    import psycopg

    with connect(settings, "user") as db:
        try:
            db.execute(schema_file.read_text())  # type: ignore[arg-type]
        except FileNotFoundError:
            raise ConfigError(
                f"{schema_file} is missing: set local_postgres.schema_file to the SQL file that "
                "creates the demo tables (infra/postgres/shop.sql)"
            ) from None
        except psycopg.Error as exc:
            raise ServiceError(f"{schema_file} failed: {exc}") from None
        grant_capture(db, _postgres(settings))
        db.commit()


def grant_capture(db: psycopg.Connection, pg: PostgresSettings) -> None:
    """What Debezium needs on the profile's tables, run as their owner: full before-images,
    SELECT for the snapshot, and the publication pgoutput reads (created once, then kept in
    step with `tables`)."""
    from psycopg import sql

    tables = [sql.Identifier(*t.split(".")) for t in pg.tables]
    for table in tables:
        db.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(table))
        db.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(table, sql.Identifier(pg.replication_user))
        )
    listed = sql.SQL(", ").join(tables)
    exists = db.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [pg.publication])
    verb = (
        "ALTER PUBLICATION {} SET TABLE {}"
        if exists.fetchone()
        else "CREATE PUBLICATION {} FOR TABLE {}"
    )
    db.execute(sql.SQL(verb).format(sql.Identifier(pg.publication), listed))


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
