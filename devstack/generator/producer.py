"""Sending generated records to Kafka at a rate, with a progress line and a delivery report."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from confluent_kafka import KafkaError, Message, Producer

from devstack.generator.shop import Record
from streaming.config import KafkaSettings
from streaming.errors import ServiceError
from streaming.kafka_client import client_config


@dataclass(frozen=True)
class Delivered:
    """Where Kafka stored one record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    fault: str | None


@dataclass
class GenerationReport:
    """What a run of the generator sent."""

    produced: int = 0
    delivered: int = 0
    failed: int = 0
    per_topic: Counter[str] = field(default_factory=Counter)
    per_fault: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    deliveries: list[Delivered] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        topics = ", ".join(f"{t} {n:,}" for t, n in sorted(self.per_topic.items()))
        faults = ", ".join(f"{f} {n:,}" for f, n in sorted(self.per_fault.items())) or "none"
        return (
            f"delivered {self.delivered:,} records in {self.seconds:.1f} s "
            f"({self.rate:,.0f}/s): {topics}; faults: {faults}"
        )


class _Progress:
    """A one-line progress display, refreshed at most once a second."""

    def __init__(self, out: IO[str] | None, total: int | None) -> None:
        self.out = out
        self.total = total
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, report: GenerationReport, force: bool = False) -> None:
        now = time.monotonic()
        if self.out is None or (not force and now - self.last < 1.0):
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        of_total = f"/{self.total:,}" if self.total else ""
        self.out.write(
            f"\rgenerate: {report.delivered:,}{of_total} records delivered, "
            f"{report.delivered / elapsed:,.0f}/s, faults {sum(report.per_fault.values()):,}   "
        )
        self.out.flush()

    def close(self) -> None:
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()


def produce(
    kafka: KafkaSettings,
    records: Iterable[Record],
    *,
    rate: float | None = None,
    count: int | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    keep_deliveries: bool = False,
    progress: IO[str] | None = None,
    on_delivery: Callable[[Delivered], None] | None = None,
) -> GenerationReport:
    """Send `records` to Kafka, paced at `rate` per second (None: as fast as possible), until
    `count` records, `seconds` elapsed, or `stop` is set, whichever comes first.

    The producer is idempotent (acks=all), so retries never add copies; the only duplicates are
    the ones the generator made on purpose. Raises ServiceError when records were not delivered.
    """
    report = GenerationReport()
    producer = Producer(
        {
            **client_config(kafka),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",  # the Java clients' partitioner (Debezium's too)
        }
    )
    display = _Progress(progress, count)
    started = time.monotonic()
    deadline = started + seconds if seconds else None

    def delivered(err: KafkaError | None, msg: Message, record: Record) -> None:
        if err is not None:
            report.failed += 1
            if len(report.errors) < 5:
                report.errors.append(f"{record.topic}: {err.str()}")
            return
        report.delivered += 1
        item = Delivered(
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            record.key,
            record.value,
            record.fault,
        )
        if keep_deliveries:
            report.deliveries.append(item)
        if on_delivery is not None:
            on_delivery(item)

    try:
        for record in records:
            if count is not None and report.produced >= count:
                break
            now = time.monotonic()
            if (deadline is not None and now >= deadline) or (stop is not None and stop.is_set()):
                break
            if rate:
                due = started + report.produced / rate
                if due > now:
                    _wait(producer, due, stop)
            _send(producer, record, delivered)
            report.produced += 1
            report.per_topic[record.topic] += 1
            if record.fault:
                report.per_fault[record.fault] += 1
            display.update(report)
        remaining = producer.flush(60)
        if remaining:
            report.failed += remaining
            report.errors.append(f"{remaining} records still queued after 60 s")
    finally:
        report.seconds = time.monotonic() - started
        display.update(report, force=True)
        display.close()
    if report.failed:
        raise ServiceError(
            f"{report.failed} of {report.produced} records were not delivered to Kafka at "
            f"{kafka.bootstrap_servers}: {'; '.join(report.errors)}"
        )
    return report


def _send(producer: Producer, record: Record, callback: Callable[..., None]) -> None:
    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        callback(err, msg, record)

    while True:
        try:
            producer.produce(
                record.topic,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
                on_delivery=on_delivery,
            )
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)  # the local queue is full: let deliveries drain it


def _wait(producer: Producer, due: float, stop: threading.Event | None) -> None:
    while (left := due - time.monotonic()) > 0:
        if stop is not None and stop.is_set():
            return
        producer.poll(min(left, 0.05))


def stderr_if_tty() -> IO[str] | None:
    """stderr when it is a terminal (the progress line), else None."""
    return sys.stderr if sys.stderr.isatty() else None


__all__: list[Any] = ["Delivered", "GenerationReport", "produce", "stderr_if_tty"]
