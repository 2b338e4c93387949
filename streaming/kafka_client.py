"""Talking to Kafka from Python (admin, offsets) and handing Spark the same connection settings.

Secrets are read from the environment variables the profile names, at the moment a client is
built, and are never logged or put in an exception message.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    NewTopic,
)

from streaming.config import KafkaSettings, Source
from streaming.errors import ConfigError, ServiceError

_LIBRDKAFKA_LOG = logging.getLogger("headwater.librdkafka")
_LIBRDKAFKA_LOG.setLevel(logging.CRITICAL)
_RETRIABLE = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
}

_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _secret(name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if not value:
        raise ConfigError(
            f"environment variable {name} is not set: the profile's kafka.sasl block reads a "
            "credential from it"
        )
    return value


def client_config(kafka: KafkaSettings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """librdkafka settings (confluent-kafka) for the profile's Kafka."""
    env = os.environ if environ is None else environ
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
        # librdkafka logs every refused connection to stderr; route its log to Python's
        # logging instead, where headwater decides what is worth showing.
        "logger": _LIBRDKAFKA_LOG,
    }
    if kafka.sasl is not None:
        conf["sasl.mechanism"] = kafka.sasl.mechanism
        conf["sasl.username"] = _secret(kafka.sasl.username_env, env)
        conf["sasl.password"] = _secret(kafka.sasl.password_env, env)
    if kafka.ssl_ca_location:
        conf["ssl.ca.location"] = kafka.ssl_ca_location
    return conf


def spark_kafka_options(
    kafka: KafkaSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`kafka.*` options for Spark's Kafka source and sink."""
    env = os.environ if environ is None else environ
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap_servers,
        "kafka.security.protocol": kafka.security_protocol,
    }
    if kafka.sasl is not None:
        user = _secret(kafka.sasl.username_env, env).replace('"', '\\"')
        password = _secret(kafka.sasl.password_env, env).replace('"', '\\"')
        options["kafka.sasl.mechanism"] = kafka.sasl.mechanism
        options["kafka.sasl.jaas.config"] = (
            f'{_JAAS_MODULES[kafka.sasl.mechanism]} required username="{user}" '
            f'password="{password}";'
        )
    if kafka.ssl_ca_location:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = kafka.ssl_ca_location
    return options


def admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(client_config(kafka))


def check_access(
    kafka: KafkaSettings,
    timeout_s: float = 30.0,
    *,
    environ: Mapping[str, str] | None = None,
) -> ClusterMetadata:
    """The cluster's metadata, read with the profile's credentials: the first thing headwater
    asks Kafka, so that a refused login stops it at start-up.

    Raises ConfigError naming the user, the bootstrap servers and the environment variable of
    the password (never the password) when Kafka refuses the login, ServiceError when Kafka
    does not answer within `timeout_s`.
    """
    refused: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            refused.append(error)

    # librdkafka retries a refused login until the request times out and reports the refusal
    # only to an error callback: ask in short rounds and look at what the callback saw.
    env = os.environ if environ is None else environ
    conf: dict[str, Any] = {**client_config(kafka, env), "error_cb": on_error}
    probe = AdminClient(conf)
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            return probe.list_topics(timeout=min(2.0, max(0.1, give_up - time.monotonic())))
        except KafkaException as exc:
            probe.poll(0)  # serve the error callback
            if refused:
                raise _login_refused(kafka, env) from None
            if time.monotonic() >= give_up:
                raise ServiceError(
                    f"Kafka at {kafka.bootstrap_servers} did not answer within "
                    f"{timeout_s:.0f} s ({exc.args[0].str()}): check that the brokers run and "
                    "the profile's kafka block (bootstrap_servers, security_protocol)"
                ) from None


def _login_refused(kafka: KafkaSettings, environ: Mapping[str, str]) -> ConfigError:
    sasl = kafka.sasl
    if sasl is None:  # SSL without SASL: the broker refused the TLS handshake
        return ConfigError(
            f"Kafka at {kafka.bootstrap_servers} refused the connection during authentication: "
            "check kafka.ssl_ca_location and kafka.security_protocol in the profile"
        )
    user = environ.get(sasl.username_env, "?")
    return ConfigError(
        f"authentication failed for user {user} at bootstrap {kafka.bootstrap_servers} "
        f"({sasl.mechanism}): check the password in the environment variable named in "
        f"kafka.sasl.password_env ({sasl.password_env}) and the user in "
        f"kafka.sasl.username_env ({sasl.username_env})"
    )


def broker_answers(kafka: KafkaSettings, timeout_s: float = 2.0) -> bool:
    """True when a broker at the bootstrap address returns cluster metadata in time."""
    try:
        admin(kafka).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def wait_until_ready(kafka: KafkaSettings, deadline_s: float = 60.0) -> None:
    """Block until the broker answers; ServiceError after `deadline_s` seconds."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if broker_answers(kafka):
            return
        time.sleep(0.5)
    raise ServiceError(
        f"Kafka at {kafka.bootstrap_servers} did not answer within {deadline_s:.0f} s: "
        "check that the broker runs (`headwater status`) and the address in the profile"
    )


def ensure_topics(
    kafka: KafkaSettings, sources: Iterable[Source], timeout_s: float = 30.0
) -> list[str]:
    """Create the sources' topics that do not exist yet; returns the names it created.

    The profile's kafka.replication_factor and kafka.min_insync_replicas, when set, apply to
    every topic created (a source's own replication_factor otherwise). Raises ConfigError when
    Kafka refuses the credentials, ServiceError when a topic cannot be created.
    """
    client = admin(kafka)
    existing = set(check_access(kafka, timeout_s).topics)
    topic_config = (
        {"min.insync.replicas": str(kafka.min_insync_replicas)}
        if kafka.min_insync_replicas is not None
        else {}
    )
    wanted = [
        NewTopic(
            s.topic,
            num_partitions=s.partitions,
            replication_factor=kafka.replication_factor or s.replication_factor,
            config=topic_config,
        )
        for s in sources
        if s.topic not in existing
    ]
    if not wanted:
        return []
    created = []
    for topic, future in client.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result()
            created.append(topic)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ServiceError(f"could not create Kafka topic {topic}: {exc}") from None
    _wait_for_leaders(client, [t.topic for t in wanted], timeout_s)
    return created


def _wait_for_leaders(client: AdminClient, topics: list[str], timeout_s: float) -> None:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        meta = client.list_topics(timeout=timeout_s).topics
        if all(
            t in meta
            and meta[t].partitions
            and all(p.leader >= 0 for p in meta[t].partitions.values())
            for t in topics
        ):
            return
        time.sleep(0.2)
    raise ServiceError(
        f"Kafka topics {', '.join(topics)} got no partition leader in {timeout_s:.0f} s"
    )


def end_offsets(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The high watermark of each partition of `topic` (how many offsets it has used)."""
    consumer = Consumer(
        {**client_config(kafka), "group.id": "headwater-offsets", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ServiceError(f"Kafka topic {topic} does not exist at {kafka.bootstrap_servers}")
        give_up = time.monotonic() + timeout_s
        result = {}
        for partition in meta.partitions:
            while True:
                try:
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=timeout_s
                    )
                    break
                except KafkaException as exc:
                    # A new topic's leaders take a moment to be known to every client.
                    if exc.args[0].code() not in _RETRIABLE or time.monotonic() > give_up:
                        raise ServiceError(
                            f"could not read the end offsets of {topic}[{partition}]: {exc}"
                        ) from None
                    time.sleep(0.2)
            result[partition] = high
        return result
    finally:
        consumer.close()
