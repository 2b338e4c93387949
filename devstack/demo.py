"""The demo: the local broker, PostgreSQL and Kafka Connect with Debezium (when the profile
has them), the shop generator and customer changes, every layer's streams and the Dagster UI,
in the foreground.

Ctrl-C (or SIGTERM, or the end of `seconds`) stops everything it started: the generators, the
streams, Spark, the Dagster UI, and each service that was not already running.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from devstack.generator.customers import CustomerChanges
from devstack.generator.customers_db import (
    CustomerWorkload,
    WorkloadReport,
    existing_customers,
    run_workload,
)
from devstack.generator.producer import GenerationReport, produce
from devstack.generator.shop import FaultRates, Record, ShopSimulator
from devstack.services.dagster_ui import DagsterUi
from devstack.services.kafka_broker import LocalKafka
from devstack.services.kafka_connect import ConnectRest, LocalConnect, apply_connectors
from devstack.services.postgres import LocalPostgres
from streaming import plan
from streaming.config import Settings
from streaming.errors import HeadwaterError
from streaming.jobs.common import stop_on_signals
from streaming.kafka_client import ensure_topics

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from streaming.progress import ProgressRecorder
    from streaming.visibility import ChangeFreshness

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0
CHANGES_EVERY_S = 30.0  # how often the demo says how fresh the CDC sources' changes are


class FreshnessReport:
    """How long records took to become visible, read from the lake's Delta logs and the gold
    streams' checkpoints (no Spark job): the CDC sources' changes committed since `since_ms`,
    from their commit in the source database to silver's current state and to the gold
    tables they feed; the event sources' records since `since_ms`, from their Kafka timestamp
    to silver and to the gold tables they feed."""

    def __init__(self, settings: Settings, since_ms: int) -> None:
        from streaming.gold.definitions import load_gold_tables
        from streaming.silver.streams import cdc_contract, event_contract

        self.since_ms = since_ms
        self.changes: list[tuple[str, str, str, dict[str, tuple[str, str]]]] = []
        self.events: list[tuple[str, str, dict[str, tuple[str, str]]]] = []
        gold = load_gold_tables(settings)

        def fed_by(table: str) -> dict[str, tuple[str, str]]:
            return {
                t.name: (
                    settings.table_path("gold", t.name),
                    settings.checkpoint_path("gold", t.name),
                )
                for t in gold
                if any(s.table == table for s in t.sources)
            }

        for source in settings.pipeline.sources:
            events = event_contract(settings, source)
            if events is not None:
                name = f"silver.{events.silver_table}"
                self.events.append((settings.table_path_by_name(name), name, fed_by(name)))
            contract = cdc_contract(settings, source)
            if contract is not None:
                cdc = plan.cdc_tables(contract.silver_table)
                changes = plan.qualified(plan.SILVER, cdc.changes)
                self.changes.append(
                    (
                        settings.table_path(plan.SILVER, cdc.changes),
                        settings.table_path(plan.SILVER, cdc.current),
                        plan.qualified(plan.SILVER, cdc.current),
                        fed_by(changes),
                    )
                )

    def measure(self) -> list[tuple[str, ChangeFreshness]]:
        """(table first landed in, its records' freshness) per source whose tables exist."""
        from streaming.delta_log import latest_version
        from streaming.visibility import change_freshness, event_freshness

        found = []
        for silver, name, gold in self.events:
            if latest_version(silver) is not None:
                found.append((name, event_freshness(silver, gold, since_ms=self.since_ms)))
        for changes, current, name, gold in self.changes:
            if latest_version(changes) is None or latest_version(current) is None:
                continue
            found.append((name, change_freshness(changes, current, gold, since_ms=self.since_ms)))
        return found

    def lines(self) -> list[str]:
        """A line per source with records measured so far; none (and a warning in the log)
        when a file could not be read: a status line never stops the demo."""
        try:
            described = [freshness.describe(name) for name, freshness in self.measure()]
        except (OSError, ValueError) as exc:
            log.warning("could not measure the freshness: %s", exc)
            return []
        return [line for line in described if line is not None]


def run_demo(
    settings: Settings,
    *,
    seconds: float | None,
    rate: float,
    faults: FaultRates,
    stop: threading.Event,
    out: IO[str] = sys.stdout,
    ui: bool = True,
) -> dict[str, int]:
    """Run the demo until `stop` is set or `seconds` pass; returns rows per table.

    With `ui` (and the profile's dagster_ui.enabled) it also runs the Dagster UI. Raises
    ServiceError when a port is taken or a service does not come up.
    """
    # Spark is imported here so the CLI's other commands start fast.
    from streaming.locks import stream_locks
    from streaming.progress import ProgressRecorder
    from streaming.runner import (
        LAYERS,
        start_streams,
        stop_queries,
        stream_ids,
        switch_topology,
        watch,
    )
    from streaming.session import build_spark_session

    demo_started = time.monotonic()
    broker = LocalKafka.from_settings(settings)
    dagster_ui = (
        DagsterUi.from_settings(settings) if ui and settings.profile.dagster_ui.enabled else None
    )
    if dagster_ui is not None:
        dagster_ui.check_port()  # before anything starts
    status, started_broker = broker.up()
    print(status.describe() + (" (started by the demo)" if started_broker else ""), file=out)
    generator_error: list[BaseException] = []
    ui_error: list[HeadwaterError] = []
    reports: dict[str, GenerationReport | WorkloadReport] = {}
    locks = contextlib.ExitStack()
    stop_services: list[Callable[[], object]] = []
    capturing: threading.Thread | None = None  # starts PostgreSQL and Connect, when configured
    try:
        # The demo's streams are taken before the UI starts: its supervisor sensor then sees a
        # pipeline run outside Dagster and only observes it, instead of starting a second one.
        every_stream = stream_ids(settings, settings.pipeline.sources, LAYERS)
        locks.enter_context(stream_locks(settings, every_stream, "headwater demo"))
        if dagster_ui is not None:
            # It starts while the rest does (all take a while) and is waited for in the background.
            _start_ui(dagster_ui, stop, ui_error, demo_started, out)
        ensure_topics(settings.profile.kafka, settings.pipeline.sources)
        # PostgreSQL and Connect come up (half a minute or more) while Spark and the shop's
        # streams start: orders reach bronze without waiting for the database.
        capture = (
            settings.profile.postgres is not None and settings.profile.kafka_connect is not None
        )
        capture_error: list[BaseException] = []
        if capture:
            capturing = threading.Thread(
                target=_start_change_capture_in_background,
                args=(settings, out, stop_services, capture_error),
                name="change-capture",
                daemon=True,
            )
            capturing.start()
        spark = build_spark_session(settings)
        stop_on_signals(stop)
        print(
            f"spark: {spark.sparkContext.master}, Spark {spark.version}, UI {spark.sparkContext.uiWebUrl or 'off'}",
            file=out,
        )
        seed = secrets.randbits(32)
        now = datetime.now(UTC)
        shop: Iterable[Record] = ShopSimulator(seed, now, rate=rate, faults=faults)
        feeds: list[tuple[str, Callable[[], GenerationReport | WorkloadReport]]] = [
            ("shop", lambda: produce(settings.profile.kafka, shop, rate=rate, stop=stop))
        ]
        cdc = [s for s in settings.pipeline.sources if s.kind == "cdc"]
        cdc_rate = max(rate / 10, 1)  # customers change a tenth as often as orders arrive
        if cdc and capturing is not None:
            # Customers change in PostgreSQL (once it and Debezium run); Debezium brings every
            # commit to Kafka.
            starting = capturing

            def customers_in_postgres() -> WorkloadReport:
                while starting.is_alive():
                    starting.join(0.5)
                    if stop.is_set():
                        return WorkloadReport()
                if capture_error:
                    raise capture_error[0]
                workload = CustomerWorkload(seed, existing_customers(settings))
                return run_workload(settings, workload, rate=cdc_rate, stop=stop)

            feeds.append(("customers in postgres", customers_in_postgres))
        elif cdc:
            # No database configured: the generator writes Debezium's envelope itself.
            changes = CustomerChanges(seed, now, rate=cdc_rate, faults=faults, topic=cdc[0].topic)
            feeds.append(
                (
                    "customers",
                    lambda: produce(settings.profile.kafka, changes, rate=cdc_rate, stop=stop),
                )
            )

        def generate(name: str, feed: Callable[[], GenerationReport | WorkloadReport]) -> None:
            try:
                reports[name] = feed()
            except BaseException as exc:  # reported by the main thread
                generator_error.append(exc)
                stop.set()

        # The shop opens once the streams are started, and the demo's time counts from here.
        # The first batches still carry the driver's warm-up (about half a minute on two
        # cores, beside the Dagster UI's start), which weighs on the demo's freshness figures;
        # a restart's cost is measured on its own by `headwater bench` (restart_to_gold_s).
        generators = [
            threading.Thread(target=generate, args=feed, name=f"generator-{feed[0]}", daemon=True)
            for feed in feeds
        ]
        try:
            with ProgressRecorder(spark, settings) as recorder:
                topology = settings.pipeline.topology
                switch_topology(spark, settings, topology, stop=stop)
                queries = start_streams(
                    spark, settings, settings.pipeline.sources, available_now=False
                )
                for generator in generators:
                    generator.start()
                started = time.monotonic()
                freshness = FreshnessReport(settings, int(time.time() * 1000))
                ends = started + seconds if seconds else None
                print(
                    f"demo: generating ~{rate + (cdc_rate if cdc else 0):g} records/s "
                    f"(seed {seed}) into {', '.join(s.topic for s in settings.pipeline.sources)}"
                    + (" (customers: changes in PostgreSQL, via Debezium)" if capture else "")
                    + f"; tables under {settings.table_path('', '').rstrip('/')}/"
                    + (f"; stops after {seconds:g} s" if seconds else "; Ctrl-C stops everything"),
                    file=out,
                )
                last_status = [started, started]

                def tick() -> None:
                    if time.monotonic() - last_status[0] >= STATUS_EVERY_S:
                        last_status[0] = time.monotonic()
                        print(_status_line(recorder, started), file=out, flush=True)
                    if time.monotonic() - last_status[1] >= CHANGES_EVERY_S:
                        last_status[1] = time.monotonic()
                        for line in freshness.lines():
                            print(f"[{time.monotonic() - started:5.0f} s] {line}", file=out)

                try:
                    watch(
                        queries,
                        stop=stop,
                        deadline=(lambda: time.monotonic() >= ends) if ends else None,
                        on_tick=tick,
                    )
                finally:
                    asked = stop.is_set() or (ends is not None and time.monotonic() >= ends)
                    stop.set()
                    _join(generators)
                    stop_queries(queries, asked_by=spark if asked else None)
        finally:
            stop.set()
            _join(generators)
        rows = _table_counts(spark, settings)
        spark.stop()
    finally:
        stop.set()
        if capturing is not None:  # what it is starting must be up before it can be stopped
            capturing.join(timeout=300)
        if dagster_ui is not None:
            dagster_ui.stop()
            print("dagster: UI stopped", file=out)
        locks.close()  # after the UI: its supervisor must not see the streams free
        for stop_service in reversed(stop_services):
            print(stop_service(), file=out)
        if started_broker:
            broker.down()
            print("kafka: stopped (the demo started it)", file=out)
    if ui_error:
        raise ui_error[0]
    if generator_error:
        error = generator_error[0]
        raise (
            error
            if isinstance(error, HeadwaterError)
            else HeadwaterError(f"the generator failed: {error}")
        )
    for name, report in reports.items():
        print(f"generator ({name}): {report.summary()}", file=out)
    for table, count in rows.items():
        print(f"{table}: {count:,} rows", file=out)
    for line in freshness.lines():
        print(f"freshness: {line}", file=out)
    return rows


def _join(generators: list[threading.Thread]) -> None:
    """Wait for the generators that started (a failed start of the streams starts none)."""
    for generator in generators:
        if generator.ident is not None:
            generator.join(timeout=120)


def _start_change_capture_in_background(
    settings: Settings,
    out: IO[str],
    stop_services: list[Callable[[], object]],
    errors: list[BaseException],
) -> None:
    try:
        _start_change_capture(settings, out, stop_services)
    except BaseException as exc:  # the customers' generator reports it and stops the demo
        log.error("change data capture did not start: %s", exc)
        errors.append(exc)


def _start_change_capture(
    settings: Settings, out: IO[str], stop_services: list[Callable[[], object]]
) -> None:
    """PostgreSQL and Kafka Connect with Debezium, as the profile configures them; what this
    call started is stopped by `stop_services` at the end."""
    profile = settings.profile
    assert profile.postgres is not None and profile.kafka_connect is not None
    if profile.local_postgres is not None:
        database = LocalPostgres(settings)
        pg_status, started = database.up()
        print(pg_status.describe() + (" (started by the demo)" if started else ""), file=out)
        if started:
            stop_services.append(
                lambda: "postgres: stopped (the demo started it)" if database.down() else ""
            )
    if profile.kafka_connect.rest_url:
        statuses = apply_connectors(settings, ConnectRest(profile.kafka_connect.rest_url), None)
    else:
        worker = LocalConnect(settings)
        connect_status, started = worker.up()
        print(connect_status.describe() + (" (started by the demo)" if started else ""), file=out)
        if started:
            stop_services.append(
                lambda: "connect: stopped (the demo started it)" if worker.down() else ""
            )
        statuses = worker.apply_connectors()
    for connector in statuses:
        print(connector.describe(), file=out)


def _start_ui(
    dagster_ui: DagsterUi,
    stop: threading.Event,
    errors: list[HeadwaterError],
    demo_started: float,
    out: IO[str],
) -> None:
    """Launch the Dagster UI; a thread prints its URL once it answers, or stops the demo."""
    dagster_ui.start()
    print(
        f"dagster: starting the UI (dagster dev: webserver and daemon) at {dagster_ui.url}; "
        f"log {dagster_ui.log_file}",
        file=out,
        flush=True,
    )

    def wait() -> None:
        try:
            if dagster_ui.wait_until_answering(stop=stop.is_set):
                print(
                    f"dagster: UI at {dagster_ui.url} "
                    f"(answering {time.monotonic() - demo_started:.0f} s after the demo started)",
                    file=out,
                    flush=True,
                )
        except HeadwaterError as exc:
            if not stop.is_set():  # the demo ending stops the UI: no error then
                log.error("the Dagster UI did not come up: %s", exc)
                errors.append(exc)
                stop.set()

    threading.Thread(target=wait, name="dagster-ui", daemon=True).start()


def _status_line(recorder: ProgressRecorder, started: float) -> str:
    """Rows read so far per layer, with the bronze streams' lag behind Kafka."""
    rows: dict[str, int] = {}
    behind: list[int] = []
    for name, last in sorted(recorder.last_by_query.items()):
        layer = name.split("_", 1)[0]
        rows[layer] = rows.get(layer, 0) + recorder.rows_by_query[name]
        if last.get("offsets_behind_latest") is not None:
            behind.append(int(last["offsets_behind_latest"]))
    if not rows:
        return f"[{time.monotonic() - started:5.0f} s] waiting for the first batch"
    parts = [f"{layer} {count:,} rows read" for layer, count in rows.items()]
    lag = f"; {sum(behind):,} records behind Kafka" if behind else ""
    return f"[{time.monotonic() - started:5.0f} s] " + "; ".join(parts) + lag


def _table_counts(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """Rows in every table the pipeline writes, by qualified name, in flow order."""
    from streaming.silver.streams import cdc_contract, event_contract
    from streaming.tables import read_table

    names = [f"bronze.{s.table_name}" for s in settings.pipeline.sources]
    for source in settings.pipeline.sources:
        contract = event_contract(settings, source)
        if contract is not None:
            names.append(f"silver.{contract.silver_table}")
        cdc = cdc_contract(settings, source)
        if cdc is not None:
            names += [plan.qualified(plan.SILVER, t) for t in plan.cdc_tables(cdc.silver_table).all]
        if contract is not None or cdc is not None:
            names += [f"quarantine.{source.table_name}", f"duplicates.{source.table_name}"]
    tables = {name: read_table(spark, settings, name) for name in names}
    return {name: table.count() for name, table in tables.items() if table is not None}
