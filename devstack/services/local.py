"""Every local service of a profile together, in dependency order: the Kafka broker, then
PostgreSQL, then the Kafka Connect worker with its connectors (the last two when the profile
configures them). `up` and `down` are idempotent; each returns what it did, one line per
service, for the CLI and the demo to print.
"""

from __future__ import annotations

from devstack.services.kafka_broker import LocalKafka
from devstack.services.kafka_connect import (
    ConnectRest,
    LocalConnect,
    apply_connectors,
    connector_files,
    connector_name,
    rest_url,
)
from devstack.services.postgres import LocalPostgres
from streaming.config import Settings
from streaming.kafka_client import ensure_topics


def up(settings: Settings) -> list[str]:
    """Start what the profile runs locally, create the topics, register the connectors.

    Raises ServiceError, DependencyError or ConfigError with what to do.
    """
    lines: list[str] = []
    profile = settings.profile
    # A profile without a local broker (a shared deployment) has nothing for `up` to start:
    # this says so in a sentence.
    status, started = LocalKafka.from_settings(settings).up()
    lines.append(status.describe() + ("" if started else " (already running)"))
    created = ensure_topics(profile.kafka, settings.pipeline.sources)
    if created:
        lines.append(f"kafka: created topics {', '.join(created)}")
    if profile.local_postgres is not None:
        pg_status, started = LocalPostgres(settings).up()
        lines.append(pg_status.describe() + ("" if started else " (already running)"))
    if profile.kafka_connect is not None:
        if profile.kafka_connect.rest_url:
            statuses = apply_connectors(settings, ConnectRest(rest_url(settings)), None)
        else:
            worker = LocalConnect(settings)
            connect_status, started = worker.up()
            lines.append(connect_status.describe() + ("" if started else " (already running)"))
            statuses = worker.apply_connectors()
        lines += [s.describe() for s in statuses]
    return lines


def down(settings: Settings) -> list[str]:
    """Stop the local services, the last started first."""
    lines: list[str] = []
    profile = settings.profile
    if profile.kafka_connect is not None and not profile.kafka_connect.rest_url:
        stopped = LocalConnect(settings).down()
        lines.append("connect: stopped" if stopped else "connect: was not running")
    if profile.local_postgres is not None:
        stopped = LocalPostgres(settings).down()
        lines.append("postgres: stopped" if stopped else "postgres: was not running")
    if profile.local_kafka is not None:
        stopped = LocalKafka.from_settings(settings).down()
        lines.append("kafka: stopped" if stopped else "kafka: was not running")
    return lines


def status(settings: Settings) -> tuple[bool, list[str]]:
    """Whether every local service answers, and one line per service (and connector)."""
    healthy = True
    lines: list[str] = []
    profile = settings.profile
    if profile.local_kafka is not None:
        kafka = LocalKafka.from_settings(settings).status()
        healthy &= kafka.answering
        lines.append(kafka.describe())
    if profile.local_postgres is not None:
        pg = LocalPostgres(settings).status()
        healthy &= pg.answering
        lines.append(pg.describe())
    if profile.kafka_connect is not None:
        rest = ConnectRest(rest_url(settings))
        if not profile.kafka_connect.rest_url:
            worker = LocalConnect(settings).status()
            healthy &= worker.answering
            lines.append(worker.describe())
        if rest.answers():
            for file in connector_files(settings):
                name = connector_name(file)
                connector = rest.status(name)
                healthy &= connector is not None and connector.running
                lines.append(
                    connector.describe()
                    if connector
                    else f"connector {name}: not registered (run headwater up)"
                )
        else:
            healthy = False
            lines.append(f"connect: nothing answers at {rest.url}")
    return healthy, lines
