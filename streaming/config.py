"""conf/ loaded into one typed, immutable model of the pipeline.

conf/pipeline.yaml describes *what* runs (sources, layers, triggers); conf/profiles/<name>.yaml
describes *where* (Spark master, Kafka, lake paths). `load_settings` reads both and fails on a
bad file with a `ConfigError` that names the file, the field and the problem.

Nothing here reads the environment at import time: the profile and the conf directory are
chosen when `load_settings` is called.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streaming.errors import ConfigError

DEFAULT_PROFILE = "local"
PROFILE_ENV = "HEADWATER_PROFILE"
CONF_ENV = "HEADWATER_CONF"

_INTERVAL = re.compile(r"^\d+(\.\d+)?\s+(millisecond|second|minute|hour)s?$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_M = TypeVar("_M", bound=BaseModel)


def _interval(value: str) -> str:
    if not _INTERVAL.match(value.strip()):
        raise ValueError("write an interval like '1 second', '500 milliseconds' or '2 minutes'")
    return value.strip()


# A trigger interval as Spark reads it ('1 second', '500 milliseconds'), validated once.
Interval = Annotated[str, AfterValidator(_interval)]


def _five_field_cron(value: str) -> str:
    return _cron(value)  # defined with the maintenance settings, found at validation time


# A five-field cron expression (UTC), validated once, by one rule, wherever conf takes one.
Cron = Annotated[str, AfterValidator(_five_field_cron)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- the pipeline (conf/pipeline.yaml) -------------------------------------------------------


class Source(_Frozen):
    """A Kafka topic headwater ingests."""

    topic: str = Field(description="Kafka topic name")
    kind: Literal["events", "cdc"] = Field(
        "events", description="application events or Debezium CDC"
    )
    partitions: Annotated[int, Field(ge=1)] = 3
    replication_factor: Annotated[int, Field(ge=1)] = 1
    description: str = ""
    silver: bool = Field(
        True,
        description="events: parse by conf/contracts/<topic>.yaml into silver (bronze only when false)",
    )

    @field_validator("topic")
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError(
                "a Kafka topic name is 1-249 characters of letters, digits, '.', '_' or '-'"
            )
        return value

    @property
    def table_name(self) -> str:
        """The table name for this topic in every layer: dots become underscores."""
        return self.topic.replace(".", "_").replace("-", "_")


class BronzeSettings(_Frozen):
    """How the Kafka -> bronze streams read and trigger."""

    trigger_interval: Interval = "1 second"
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: Annotated[int, Field(ge=1)] | None = 100_000
    fail_on_data_loss: bool = True

    @field_validator("starting_offsets")
    @classmethod
    def _valid_offsets(cls, value: str) -> str:
        if value in ("earliest", "latest") or value.lstrip().startswith("{"):
            return value
        raise ValueError(
            "use 'earliest', 'latest' or Spark's JSON form "
            '\'{"topic": {"0": 42}}\' for explicit offsets'
        )


class SilverSettings(_Frozen):
    """How bronze -> silver streams trigger, and where quarantined records are copied."""

    trigger_interval: Interval = "1 second"
    dead_letter_topics: bool = Field(
        False,
        description="also send quarantined records to Kafka topic <topic><dead_letter_suffix>",
    )
    dead_letter_suffix: str = ".dlq"

    def dead_letter_topic(self, topic: str) -> str | None:
        """The dead-letter topic of `topic`, or None when dead-letter topics are off."""
        return f"{topic}{self.dead_letter_suffix}" if self.dead_letter_topics else None


class GoldSettings(_Frozen):
    """How the gold tables of conf/gold/ are kept up to date."""

    trigger_interval: Interval = "1 second"


class ProgressSettings(_Frozen):
    """The ops.stream_progress table: one row per micro-batch of every stream."""

    enabled: bool = True
    flush_interval_seconds: Annotated[float, Field(gt=0)] = 5.0


class DeploymentSettings(_Frozen):
    """How `headwater run` runs the layers: all in one Spark application, or one
    spark-submit application per layer (each table still has one writing query)."""

    mode: Literal["single_application", "application_per_layer"] = "single_application"


class FreshnessSettings(_Frozen):
    """How stale a table may be (minutes since its last Delta commit) before its freshness
    check fails: a default per layer, and overrides per qualified table name."""

    default_minutes: Annotated[float, Field(gt=0)] = 15.0
    layers: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    tables: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)

    def sla_minutes(self, qualified: str) -> float:
        """The SLA of table 'layer.table' in minutes."""
        if qualified in self.tables:
            return self.tables[qualified]
        return self.layers.get(qualified.partition(".")[0], self.default_minutes)


class AlertingSettings(_Frozen):
    """Where alerts go besides the log: a webhook whose URL is in an environment variable
    (a secret, so never in conf)."""

    webhook_url_env: str | None = Field(
        "HEADWATER_ALERT_WEBHOOK",
        description="environment variable holding a webhook URL; alerts are POSTed as JSON when set",
    )


class Expectation(_Frozen):
    """An extra data-quality expectation on a table, beyond what its contract implies."""

    expectation: Literal["not_null", "between", "in_set", "match_regex", "unique"]
    column: str
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None
    regex: str | None = None
    criticality: Literal["error", "warn"] = "error"


class OrchestrationSettings(_Frozen):
    """How Dagster runs, supervises and checks the pipeline."""

    micro_batch_cron: Cron = Field(
        "* * * * *", description="cron of the orchestrated micro-batch schedule"
    )
    default_mode: Literal["continuous", "micro_batch"] = Field(
        "continuous",
        description="which of the two run modes starts on its own in `dagster dev`; the "
        "other is off until turned on in the UI",
    )
    partitions_start: str = Field("2026-01-01", description="first day of the day partitions")
    supervisor_interval_seconds: Annotated[int, Field(ge=5)] = 15
    stuck_after_seconds: Annotated[float, Field(gt=0)] = Field(
        180.0,
        description="a running continuous pipeline with no stream progress this long is stuck",
    )
    checks_every_minutes: Annotated[float, Field(gt=0)] = Field(
        10.0,
        description="the quality checks (expectations, reconciliation, freshness) run this "
        "often in either mode, the first time soon after Dagster starts",
    )
    owners: tuple[str, ...] = ("team:data-platform",)
    freshness: FreshnessSettings = FreshnessSettings()
    alerting: AlertingSettings = AlertingSettings()
    expectations: dict[str, tuple[Expectation, ...]] = Field(
        default_factory=dict, description="extra expectations per qualified table name"
    )

    @field_validator("partitions_start")
    @classmethod
    def _valid_date(cls, value: str) -> str:
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
            raise ValueError("write the first day as YYYY-MM-DD")
        return value


# Delta keeps removed files this long by default (delta.deletedFileRetentionDuration): a
# shorter retention must be asked for (allow_short_retention).
SAFE_VACUUM_HOURS = 168
_LOG_RETENTION = re.compile(r"^(\d+)\s+(hour|day|week)s?$")
_HOURS_PER = {"hour": 1, "day": 24, "week": 168}
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute hour day month weekday
_CRON_NAMES = {
    3: ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    4: ("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
}


def _cron(value: str) -> str:
    """A five-field cron expression (numbers, *, ranges, steps, lists, month and day names)."""
    fields = value.split()
    if len(fields) != 5 or not all(
        _cron_part(part, n) for n, field in enumerate(fields) for part in field.split(",")
    ):
        raise ValueError(
            "write a cron expression of five fields (minute hour day month weekday), "
            "e.g. '0 * * * *' for hourly or '30 2 * * *' for 02:30 UTC every day"
        )
    return " ".join(fields)


def _cron_part(part: str, field: int) -> bool:
    base, _, step = part.partition("/")
    if step and not (step.isdigit() and int(step) >= 1):
        return False
    if base == "*":
        return True
    low, high = _CRON_RANGES[field]
    names = _CRON_NAMES.get(field, ())
    bounds = base.split("-")
    if len(bounds) > 2 or not all(b.isdigit() or b.lower() in names for b in bounds):
        return False
    first = 1 if field == 3 else 0  # months count from 1 (jan), weekdays from 0 (sun)
    numbers = [int(b) if b.isdigit() else names.index(b.lower()) + first for b in bounds]
    return all(low <= n <= high for n in numbers)


def log_retention_hours(value: str) -> int:
    """Hours of a log retention written like '30 days' (as `TableMaintenance` keeps it)."""
    found = _LOG_RETENTION.match(value)
    if found is None:
        raise ValueError(f"{value!r} is not a duration like '30 days'")
    return int(found.group(1)) * _HOURS_PER[found.group(2)]


def _log_retention(value: str) -> str:
    text = " ".join(value.lower().split()).removeprefix("interval ")
    if _LOG_RETENTION.match(text) is None:
        raise ValueError("write a duration like '30 days', '2 weeks' or '720 hours'")
    return text


def _short_vacuum_problem(vacuum_hours: int, allowed: bool) -> str | None:
    if vacuum_hours >= SAFE_VACUUM_HOURS or allowed:
        return None
    return (
        f"a vacuum retention of {vacuum_hours} hours is below Delta's safe minimum of "
        f"{SAFE_VACUUM_HOURS} hours (7 days), so VACUUM could delete files that a running stream "
        "or a reader of an older version still needs: raise it to 168 or more, or set "
        "allow_short_retention: true to accept that"
    )


def _short_log_problem(log_retention: str, vacuum_hours: int) -> str | None:
    if log_retention_hours(log_retention) >= vacuum_hours:
        return None
    return (
        f"log_retention {log_retention} is shorter than vacuum_retention_hours {vacuum_hours}: "
        f"Delta keeps the log at least as long as removed files, so raise log_retention to "
        f"{vacuum_hours} hours or more"
    )


class TableMaintenance(_Frozen):
    """How maintenance treats one table. Under `maintenance.tables`, only the fields given
    there replace the `maintenance` block's."""

    enabled: bool = Field(True, description="false: maintenance leaves this table alone")
    optimize: bool = Field(
        True, description="compact small files (Delta OPTIMIZE); rows and history stay as they are"
    )
    allow_short_retention: bool = Field(
        False, description="allow a vacuum retention below Delta's safe minimum of 168 hours"
    )
    vacuum_retention_hours: Annotated[int, Field(ge=0)] = Field(
        SAFE_VACUUM_HOURS,
        description="delta.deletedFileRetentionDuration: VACUUM deletes files the table stopped "
        "referencing longer ago than this; a stream lagging further behind loses files it has "
        "yet to read",
    )
    log_retention: str = Field(
        "30 days",
        description="delta.logRetentionDuration: Delta deletes older log entries at its next "
        "checkpoint; time travel, and a stream restarted from an older checkpoint, cannot go "
        "back further. At least vacuum_retention_hours",
    )

    @field_validator("log_retention")
    @classmethod
    def _valid_log_retention(cls, value: str) -> str:
        return _log_retention(value)


class MaintenanceSettings(_Frozen):
    """Table maintenance: a schedule compacts (OPTIMIZE) and cleans (VACUUM, expired log
    entries) every table of the lake, with overrides per qualified table name."""

    enabled: bool = Field(
        True,
        description="the schedule runs on its own (false: off until turned on in the UI; the "
        "job can still be run by hand)",
    )
    cron: Cron = Field("0 * * * *", description="when the schedule runs (UTC)")
    optimize: bool = Field(True, description="every table's default; see TableMaintenance")
    allow_short_retention: bool = Field(
        False, description="every table's default; see TableMaintenance"
    )
    vacuum_retention_hours: Annotated[int, Field(ge=0)] = Field(
        SAFE_VACUUM_HOURS, description="every table's default; see TableMaintenance"
    )
    log_retention: str = Field("30 days", description="every table's default; see TableMaintenance")
    tables: dict[str, TableMaintenance] = Field(
        default_factory=dict,
        description="overrides per qualified table name (e.g. silver.orders): only the fields "
        "given replace the ones above",
    )

    @field_validator("vacuum_retention_hours")
    @classmethod
    def _safe_retention(cls, value: int, info: ValidationInfo) -> int:
        problem = _short_vacuum_problem(value, bool(info.data.get("allow_short_retention")))
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("log_retention")
    @classmethod
    def _valid_log_retention(cls, value: str, info: ValidationInfo) -> str:
        text = _log_retention(value)
        problem = _short_log_problem(text, info.data.get("vacuum_retention_hours", 0))
        if problem:
            raise ValueError(problem)
        return text

    @field_validator("tables")
    @classmethod
    def _valid_overrides(
        cls, value: dict[str, TableMaintenance], info: ValidationInfo
    ) -> dict[str, TableMaintenance]:
        retentions = ("allow_short_retention", "vacuum_retention_hours", "log_retention")
        block = {field: info.data[field] for field in retentions if field in info.data}
        for name, override in value.items():
            layer, dot, table = name.partition(".")
            if not (layer and dot and table):
                raise ValueError(f"write table {name!r} as <layer>.<table>, e.g. silver.orders")
            given = {field: getattr(override, field) for field in override.model_fields_set}
            merged = {**block, **given}
            hours = merged.get("vacuum_retention_hours", SAFE_VACUUM_HOURS)
            problem = _short_vacuum_problem(
                hours, merged.get("allow_short_retention", False)
            ) or _short_log_problem(merged.get("log_retention", "30 days"), hours)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return value

    def for_table(self, qualified: str) -> TableMaintenance:
        """The maintenance of table 'layer.table': this block's settings and its overrides."""
        policy = TableMaintenance(
            optimize=self.optimize,
            allow_short_retention=self.allow_short_retention,
            vacuum_retention_hours=self.vacuum_retention_hours,
            log_retention=self.log_retention,
        )
        override = self.tables.get(qualified)
        if override is None:
            return policy
        return policy.model_copy(
            update={field: getattr(override, field) for field in override.model_fields_set}
        )


Topology = Literal["fused", "layered"]


class Pipeline(_Frozen):
    sources: tuple[Source, ...]
    topology: Topology = Field(
        "fused",
        description="fused: one query per topic writes bronze, silver and gold in each batch; "
        "layered: one query per table, each reading the layer before it as a Delta stream",
    )
    deployment: DeploymentSettings = DeploymentSettings()
    bronze: BronzeSettings = BronzeSettings()
    silver: SilverSettings = SilverSettings()
    gold: GoldSettings = GoldSettings()
    progress: ProgressSettings = ProgressSettings()
    orchestration: OrchestrationSettings = OrchestrationSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: tuple[Source, ...]) -> tuple[Source, ...]:
        if not value:
            raise ValueError("list at least one source topic")
        names = [s.table_name for s in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two sources map to the same table name: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _layers_apart_need_layered(self) -> Pipeline:
        if self.topology == "fused" and self.deployment.mode == "application_per_layer":
            raise ValueError(
                "deployment.mode application_per_layer runs each layer in an application of its "
                "own, which needs topology: layered (fused writes every layer in one query)"
            )
        return self

    def source(self, topic_or_table: str) -> Source:
        """The source with this topic or table name; raises ConfigError if there is none."""
        for s in self.sources:
            if topic_or_table in (s.topic, s.table_name):
                return s
        known = ", ".join(s.topic for s in self.sources)
        raise ConfigError(f"no source '{topic_or_table}' in conf/pipeline.yaml (known: {known})")


# --- the profile (conf/profiles/<name>.yaml) ------------------------------------------------


class SparkSettings(_Frozen):
    master: str | None = Field(
        "local[*]", description="Spark master URL; null leaves it to spark-submit"
    )
    app_name: str = "headwater"
    shuffle_partitions: Annotated[int, Field(ge=1)] | None = Field(
        None, description="default: the number of cores of this machine"
    )
    ui_enabled: bool = True
    jars_dir: str = "infra/jars/spark"
    log_config: str | None = Field(
        "infra/spark/log4j2.properties", description="the driver's log4j2 config (local runs)"
    )
    driver_java_options: str | None = Field(
        None,
        description="more options for the driver's JVM (e.g. JIT or GC flags), read when it starts",
    )
    class_data_sharing: bool = Field(
        True,
        description="start the driver from the class-data-sharing archive `headwater "
        "jvm-archive` records (make setup does), when there is one",
    )
    fork_free_local_fs: bool = Field(
        True,
        description="local paths through headwater's file system (infra/maven/localfs), which "
        "sets permissions and reads links with java.nio instead of forking chmod and readlink "
        "for every file, when its jar is built",
    )
    extra_conf: dict[str, str] = Field(default_factory=dict)


class SaslSettings(_Frozen):
    """SASL credentials, by the names of the environment variables that hold them."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username_env: str
    password_env: str


class KafkaSettings(_Frozen):
    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl: SaslSettings | None = None
    ssl_ca_location: str | None = None
    replication_factor: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="copies of every topic headwater creates (default: each source's own, 1)",
    )
    min_insync_replicas: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="min.insync.replicas of every topic headwater creates: with acks=all, a "
        "write succeeds once this many copies have it (default: the broker's)",
    )

    @model_validator(mode="after")
    def _sasl_when_needed(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and self.sasl is None:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs a 'sasl' block "
                "(mechanism, username_env, password_env)"
            )
        if (
            self.min_insync_replicas is not None
            and self.replication_factor is not None
            and self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                f"min_insync_replicas {self.min_insync_replicas} is more than "
                f"replication_factor {self.replication_factor}: no write could ever succeed"
            )
        return self


class LocalKafkaSettings(_Frozen):
    """The embedded single-node KRaft broker that `headwater up` runs on 127.0.0.1."""

    port: Annotated[int, Field(ge=1, le=65535)] = 9092
    controller_port: Annotated[int, Field(ge=1, le=65535)] = 9093
    heap: str = "512m"
    jars_dir: str = "infra/jars/kafka"
    config_dir: str = Field(
        "infra/kafka", description="server.properties.template, log4j2.properties"
    )

    @model_validator(mode="after")
    def _distinct_ports(self) -> LocalKafkaSettings:
        if self.port == self.controller_port:
            raise ValueError("port and controller_port must differ")
        return self


class LocalKafkaClusterSettings(_Frozen):
    """The secured Kafka cluster that `headwater cluster up` runs on 127.0.0.1: `nodes` KRaft
    nodes (broker and controller each), node i (from 1) on ports first_port + 3(i-1) (clients,
    SASL_SSL), + 1 (replication) and + 2 (the quorum); topics get three copies, two in sync."""

    nodes: Annotated[int, Field(ge=3, le=9)] = 3
    first_port: Annotated[int, Field(ge=1024, le=65000)] = 19092
    heap: str = "384m"
    jars_dir: str = "infra/jars/kafka"
    config_dir: str = Field(
        "infra/kafka", description="cluster-node.properties.template, log4j2.properties"
    )


class LakeSettings(_Frozen):
    root: str = Field(description="where tables live: <root>/<layer>/<table>")
    checkpoints: str = Field(description="where stream checkpoints live")


class DagsterUiSettings(_Frozen):
    """The Dagster UI (`dagster dev`: webserver and daemon) that `headwater demo` starts on
    127.0.0.1."""

    enabled: bool = Field(True, description="false: the demo runs without it (as --no-ui)")
    port: Annotated[int, Field(ge=1, le=65535)] = 3000


_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DagsterPostgresSettings(_Frozen):
    """A PostgreSQL database for Dagster's runs, event logs and schedules (dagster-postgres
    creates its tables). The password comes only from the environment variable
    `password_env` names: the instance's dagster.yaml refers to that variable too."""

    host: str = Field(min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    database: str = Field("dagster", min_length=1)
    user: str = Field(min_length=1)
    password_env: str = Field(description="environment variable with the user's password")
    params: dict[str, str] = Field(
        default_factory=dict, description="more libpq connection parameters, e.g. sslmode: require"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_password_in_conf(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "do not write the password into the profile: set password_env to the name of "
                "an environment variable that holds it"
            )
        return data

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_VAR.match(value):
            raise ValueError(
                "name the environment variable that holds the password (letters, digits and _, "
                "e.g. HEADWATER_DAGSTER_PG_PASSWORD), not the password itself"
            )
        return value

    @field_validator("params")
    @classmethod
    def _no_password_param(cls, value: dict[str, str]) -> dict[str, str]:
        if "password" in value:
            raise ValueError("the password comes from password_env, not from params")
        return value


class DagsterStorageSettings(_Frozen):
    """Where Dagster keeps runs, event logs and schedules. Without this block in the profile:
    Dagster's local default, SQLite files under <state_dir>/dagster."""

    postgres: DagsterPostgresSettings


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a plain PostgreSQL name: use lower-case letters, digits and _"
        )
    return value


class PostgresSettings(_Frozen):
    """The source database: Debezium reads its WAL, the demo generator writes to it. Any
    PostgreSQL >= 10 with wal_level=logical; `local_postgres` runs one on this machine."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5433
    database: str = "shop"
    user: str = Field("headwater", description="owns the demo tables; the generator writes as it")
    password_env: str | None = Field(
        None, description="env var with the user's password (the local cluster generates one)"
    )
    replication_user: str = Field("debezium", description="the connector's login: REPLICATION")
    replication_password_env: str | None = None
    publication: str = "headwater_shop"
    slot: str = "headwater_shop"
    tables: list[str] = Field(default_factory=lambda: ["public.customers"], min_length=1)

    _names = field_validator("database", "user", "replication_user", "publication", "slot")(
        _identifier
    )

    @field_validator("tables")
    @classmethod
    def _qualified(cls, tables: list[str]) -> list[str]:
        for table in tables:
            parts = table.split(".")
            if len(parts) != 2 or not all(_IDENTIFIER.match(p) for p in parts):
                raise ValueError(f"write table {table!r} as schema.table, e.g. public.customers")
        return tables


class LocalPostgresSettings(_Frozen):
    """The project-owned PostgreSQL cluster that `headwater up` runs on 127.0.0.1 from Debian's
    packages: initdb under <state_dir>/postgres, the port of the `postgres` block."""

    bin_dir: str | None = Field(
        None, description="PostgreSQL's server programs; default: newest /usr/lib/postgresql/*/bin"
    )
    schema_file: str = Field("infra/postgres/shop.sql", description="the demo tables, idempotent")


class KafkaConnectSettings(_Frozen):
    """Kafka Connect with Debezium. Without `rest_url`, `headwater up` runs a worker on
    127.0.0.1:port (distributed mode: configs, offsets and status in Kafka topics, so a
    restart resumes); with it, headwater only registers the connectors with that cluster."""

    rest_url: str | None = Field(None, description="an existing Connect cluster's REST URL")
    port: Annotated[int, Field(ge=1, le=65535)] = 8083
    heap: str = "512m"
    jars_dir: str = "infra/jars/connect"
    plugins_dir: str = "infra/jars/connect-plugins"
    config_dir: str = Field("infra/connect", description="worker properties template, log4j2")
    group_id: str = "headwater-connect"


_MEMORY = re.compile(r"^\d+[mgMG]$")


class LocalSparkClusterSettings(_Frozen):
    """The Spark standalone cluster that `headwater cluster up` runs on 127.0.0.1 from the
    pyspark distribution: a master and `workers` workers, for spark-submit --master
    spark://127.0.0.1:<master_port>."""

    master_port: Annotated[int, Field(ge=1, le=65535)] = 7077
    webui_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        8080, description="the master's web UI (its /json/ is what `cluster status` reads)"
    )
    workers: Annotated[int, Field(ge=1, le=16)] = 2
    worker_cores: Annotated[int, Field(ge=1)] = 1
    worker_memory: str = Field("1g", description="memory a worker offers its executor")
    daemon_heap: str = Field("256m", description="heap of the master and of each worker")

    @field_validator("worker_memory", "daemon_heap")
    @classmethod
    def _valid_memory(cls, value: str) -> str:
        if not _MEMORY.match(value):
            raise ValueError("write a JVM memory size like '512m' or '1g'")
        return value.lower()

    @model_validator(mode="after")
    def _distinct_ports(self) -> LocalSparkClusterSettings:
        if self.master_port == self.webui_port:
            raise ValueError("master_port and webui_port must differ")
        return self


class Profile(_Frozen):
    state_dir: str = ".headwater"
    spark: SparkSettings = SparkSettings()
    kafka: KafkaSettings
    lake: LakeSettings
    local_kafka: LocalKafkaSettings | None = None
    dagster_ui: DagsterUiSettings = DagsterUiSettings()
    dagster_storage: DagsterStorageSettings | None = None
    postgres: PostgresSettings | None = None
    local_postgres: LocalPostgresSettings | None = None
    kafka_connect: KafkaConnectSettings | None = None
    local_spark_cluster: LocalSparkClusterSettings | None = None
    local_kafka_cluster: LocalKafkaClusterSettings | None = None

    @model_validator(mode="after")
    def _local_postgres_is_local(self) -> Profile:
        if self.local_postgres is not None:
            if self.postgres is None:
                raise ValueError(
                    "local_postgres needs a 'postgres' block (its port, database and users)"
                )
            if self.postgres.host not in ("127.0.0.1", "localhost"):
                raise ValueError(
                    f"local_postgres runs on 127.0.0.1, but postgres.host is "
                    f"{self.postgres.host}: drop local_postgres to use that server"
                )
        if self.kafka_connect is not None and self.postgres is None:
            raise ValueError("kafka_connect needs a 'postgres' block: the database Debezium reads")
        return self


# --- everything together -------------------------------------------------------------------


class Settings(_Frozen):
    """The whole configuration: the pipeline model plus the environment it runs in."""

    profile_name: str
    conf_dir: Path
    project_root: Path
    pipeline: Pipeline
    profile: Profile

    def resolve(self, path: str) -> str:
        """A config path made absolute: URIs stay as they are, relative paths hang off the
        project root (the directory that holds conf/)."""
        if _URI.match(path):
            return path
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else (self.project_root / p).resolve())

    @property
    def state_dir(self) -> Path:
        return Path(self.resolve(self.profile.state_dir))

    def table_path(self, layer: str, table: str) -> str:
        """Location of table `<layer>.<table>` in the lake."""
        return f"{self.resolve(self.profile.lake.root).rstrip('/')}/{layer}/{table}"

    def checkpoint_path(self, layer: str, table: str) -> str:
        """Checkpoint of the one stream that writes `<layer>.<table>`."""
        return f"{self.resolve(self.profile.lake.checkpoints).rstrip('/')}/{layer}/{table}"

    def table_path_by_name(self, qualified: str) -> str:
        """Location of a table given as 'layer.table' (e.g. 'bronze.shop_orders')."""
        layer, sep, table = qualified.partition(".")
        if not sep or not table:
            raise ConfigError(f"'{qualified}' is not a table name: write it as <layer>.<table>")
        return self.table_path(layer, table)


def default_conf_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$HEADWATER_CONF, else ./conf, else the conf/ of the source checkout."""
    env = os.environ if environ is None else environ
    if env.get(CONF_ENV):
        return Path(env[CONF_ENV]).expanduser().resolve()
    cwd_conf = Path.cwd() / "conf"
    if (cwd_conf / "pipeline.yaml").is_file():
        return cwd_conf.resolve()
    return (Path(__file__).resolve().parent.parent / "conf").resolve()


def load_settings(
    conf_dir: Path | str | None = None,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read conf/pipeline.yaml and conf/profiles/<profile>.yaml.

    The profile is the argument, else $HEADWATER_PROFILE, else 'local'.
    Raises ConfigError naming the file and field when either file is missing or invalid.
    """
    env = os.environ if environ is None else environ
    conf = Path(conf_dir).expanduser().resolve() if conf_dir else default_conf_dir(env)
    name = profile or env.get(PROFILE_ENV) or DEFAULT_PROFILE
    pipeline_file = conf / "pipeline.yaml"
    profile_file = conf / "profiles" / f"{name}.yaml"
    if not profile_file.is_file() and (conf / "profiles").is_dir():
        known = sorted(p.stem for p in (conf / "profiles").glob("*.yaml"))
        raise ConfigError(
            f"{profile_file}: no such profile '{name}'; choose one of {', '.join(known) or 'none'}"
            f" (set {PROFILE_ENV} or pass --profile)"
        )
    pipeline = parse_file(Pipeline, pipeline_file)
    prof = _validate(Profile, profile_data(profile_file), profile_file)
    ca = prof.kafka.ssl_ca_location
    if ca and not Path(ca).is_absolute():
        # Clients (and Spark's executors, in other working directories) need it absolute.
        kafka = prof.kafka.model_copy(update={"ssl_ca_location": str(conf.parent / ca)})
        prof = prof.model_copy(update={"kafka": kafka})
    return Settings(
        profile_name=name,
        conf_dir=conf,
        project_root=conf.parent,
        pipeline=pipeline,
        profile=prof,
    )


def parse_file(model: type[_M], path: Path) -> _M:
    """`model` validated from the YAML file at `path`; ConfigError naming file and field."""
    return _validate(model, _read_yaml(path), path)


def profile_data(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The profile file at `path` as a mapping, with what it `extends` merged in.

    `extends: <name>` starts from conf/profiles/<name>.yaml (itself possibly extending
    another): blocks merge key by key and any other value, `null` included, replaces the
    base's (a block set to `null` is gone). Raises ConfigError on an unknown or circular base.
    """
    data = _read_yaml(path)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base = path.with_name(f"{base_name}.yaml")
    if not isinstance(base_name, str) or not base.is_file():
        raise ConfigError(
            f"{path}: extends '{base_name}', which is not a profile in {path.parent} "
            "(name another file there, without .yaml)"
        )
    if base.resolve() in seen or base.resolve() == path.resolve():
        chain = " -> ".join(p.stem for p in (*seen, path.resolve(), base.resolve()))
        raise ConfigError(f"{path}: profiles extend each other in a circle ({chain})")
    return _merge(profile_data(base, (*seen, path.resolve())), data)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _validate(model: type[_M], data: dict[str, Any], path: Path) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found (is --conf pointing at headwater's conf/?)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields, not a list or value")
    return data


def _describe(err: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in err["loc"]) or "(top level)"
    kind = err.get("type", "")
    if kind == "missing":
        return f"field '{field}' is required"
    if kind == "extra_forbidden":
        return f"field '{field}' is not a known setting (check its spelling)"
    message = str(err["msg"]).removeprefix("Value error, ")
    if _may_hold_a_secret(err):
        return f"field '{field}': {message}"
    return f"field '{field}': {message} (got {err.get('input')!r})"


def _may_hold_a_secret(err: Mapping[str, Any]) -> bool:
    """Whether echoing the error's input could print a password written into the file."""
    value = err.get("input")
    keys = [str(part) for part in err["loc"]]
    if isinstance(value, Mapping):
        keys += [str(key) for key in value]
    return any("password" in key.lower() for key in keys)
