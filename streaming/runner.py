"""Running the configured streams: start them, watch them, stop them cleanly.

Used by the CLI, the spark-submit jobs and the demo alike, so a stream behaves the same
however it is started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from streaming.bronze import start_bronze
from streaming.config import Settings, Source
from streaming.errors import HeadwaterError
from streaming.gold.definitions import GoldTable, load_gold_tables
from streaming.gold.maintain import start_gold
from streaming.kafka_client import check_access
from streaming.locks import stream_locks
from streaming.progress import ProgressRecorder
from streaming.silver.streams import (
    cdc_contract,
    event_contract,
    start_silver_cdc,
    start_silver_events,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


class StreamFailed(HeadwaterError):
    """A stream stopped with an error."""


def select_sources(settings: Settings, topics: Sequence[str] | None) -> list[Source]:
    """The sources named by topic or table name (all of them when `topics` is empty)."""
    if not topics:
        return list(settings.pipeline.sources)
    return [settings.pipeline.source(t) for t in topics]


def explain_failure(query_name: str, exc: BaseException) -> StreamFailed:
    """A StreamFailed whose message says in one sentence what went wrong and what to do."""
    text = str(exc)
    if (
        "KAFKA_DATA_LOSS" in text
        or "failOnDataLoss" in text
        or "data may have been lost" in text.lower()
    ):
        return StreamFailed(
            f"stream {query_name} stopped because Kafka no longer holds records its checkpoint "
            "had not read yet (retention deleted them, or the topic was deleted and recreated), "
            "so going on would lose them silently: replay them from their source, or set "
            "bronze.fail_on_data_loss: false in conf/pipeline.yaml to skip the gap"
        )
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return StreamFailed(f"stream {query_name} stopped with an error: {first_line}")


LAYERS = ("bronze", "silver", "gold")


def start_streams(
    spark: SparkSession,
    settings: Settings,
    sources: Sequence[Source],
    *,
    available_now: bool,
    layers: Sequence[str] = LAYERS,
    gold_tables: Sequence[str] | None = None,
) -> list[StreamingQuery]:
    """Start the queries of `layers` for `sources` (bronze: every source; silver: event
    sources with a contract); on a failure, stop those already started."""
    queries: list[StreamingQuery] = []
    try:
        for layer in layers:
            for source in sources:
                if layer == "bronze":
                    queries.append(
                        start_bronze(spark, settings, source, available_now=available_now)
                    )
                elif layer == "silver":
                    events = event_contract(settings, source)
                    if events is not None:
                        queries.append(
                            start_silver_events(
                                spark, settings, source, events, available_now=available_now
                            )
                        )
                    cdc = cdc_contract(settings, source)
                    if cdc is not None:
                        queries.append(
                            start_silver_cdc(
                                spark, settings, source, cdc, available_now=available_now
                            )
                        )
                elif layer != "gold":
                    raise ValueError(f"unknown layer {layer!r}")
            if layer == "gold":
                for table in gold_tables_for(settings, sources, gold_tables):
                    queries.append(start_gold(spark, settings, table, available_now=available_now))
    except BaseException:
        stop_queries(queries)
        raise
    return queries


def stream_ids(
    settings: Settings,
    sources: Sequence[Source],
    layers: Sequence[str],
    gold_tables: Sequence[str] | None = None,
) -> list[str]:
    """The streams `start_streams` starts for these layers and sources, as lock names:
    bronze:<topic>, silver:<topic> (sources with a contract) and gold:<table>."""
    ids: list[str] = []
    for layer in layers:
        if layer == "bronze":
            ids += [f"bronze:{s.topic}" for s in sources]
        elif layer == "silver":
            ids += [
                f"silver:{s.topic}"
                for s in sources
                if event_contract(settings, s) is not None or cdc_contract(settings, s) is not None
            ]
        elif layer == "gold":
            ids += [f"gold:{t.name}" for t in gold_tables_for(settings, sources, gold_tables)]
    return ids


def gold_tables_for(
    settings: Settings, sources: Sequence[Source], names: Sequence[str] | None = None
) -> list[GoldTable]:
    """The gold tables whose sources are all silver tables of these sources' streams (only
    those named, when `names` is given)."""
    from streaming.silver.streams import cdc_contract, event_contract

    silver: set[str] = set()
    for source in sources:
        events, cdc = event_contract(settings, source), cdc_contract(settings, source)
        if events is not None:
            silver.add(f"silver.{events.silver_table}")
        if cdc is not None:
            silver |= {f"silver.{cdc.silver_table}{s}" for s in ("", "_changes", "_history")}
    return [
        t
        for t in load_gold_tables(settings)
        if all(s.table in silver for s in t.sources) and (names is None or t.name in names)
    ]


def stop_queries(
    queries: Sequence[StreamingQuery], *, asked_by: SparkSession | None = None
) -> None:
    """Stop the queries still running.

    Pass `asked_by` (their session) when the stop was asked for (Ctrl-C, SIGTERM, a deadline):
    stopping cancels the micro-batch in flight, and Spark logs every cancelled task and the
    aborted write as warnings and errors. They mean nothing here (the Delta sink commits each
    batch once; the next run redoes this one), so Spark's log is muted while the queries stop.
    """
    context = asked_by.sparkContext if asked_by is not None else None
    py4j_log = logging.getLogger("py4j")
    py4j_level = py4j_log.level
    if context is not None and any(q.isActive for q in queries):
        context.setLogLevel("OFF")
        py4j_log.setLevel(logging.CRITICAL)  # the interrupted foreachBatch calls, reported by Py4J
    try:
        for query in queries:
            try:
                if query.isActive:
                    query.stop()
            except Exception:  # stopping the rest matters more than this one's error
                log.exception("could not stop stream %s cleanly", query.name)
    finally:
        if context is not None:
            context.setLogLevel("WARN")
            py4j_log.setLevel(py4j_level)


def watch(
    queries: Sequence[StreamingQuery],
    *,
    stop: threading.Event,
    deadline: Callable[[], bool] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Block until `stop` is set, `deadline()` says so, or a query dies (StreamFailed).

    With availableNow queries this returns once all of them have caught up and ended.
    """
    while not stop.is_set():
        for query in queries:
            if not query.isActive:
                error = query.exception()
                if error is not None:
                    raise explain_failure(query.name or query.id, error)
        if all(not q.isActive for q in queries):
            return
        if deadline is not None and deadline():
            return
        if on_tick is not None:
            on_tick()
        stop.wait(POLL_SECONDS)


def run_streams(
    spark: SparkSession,
    settings: Settings,
    topics: Sequence[str] | None = None,
    *,
    available_now: bool = False,
    stop: threading.Event | None = None,
    layers: Sequence[str] = LAYERS,
    owner: str = "headwater run",
    gold_tables: Sequence[str] | None = None,
) -> dict[str, int]:
    """Run the streams of `layers` for `topics` (default: every layer of every source) with
    progress recording.

    Continuous mode runs every query at once until `stop` is set (or Ctrl-C); availableNow
    mode catches up layer by layer (bronze, then silver reads all of it) and returns.
    Returns rows read per stream. Raises StreamFailed when a stream dies, StreamBusy
    (before starting anything) when another process runs one of these streams, and
    ConfigError (before starting anything) when Kafka refuses the profile's credentials.
    """
    sources = select_sources(settings, topics)
    if "bronze" in layers:
        # The first word with Kafka: a refused login stops the run here, in one sentence,
        # before a lock, a checkpoint or a table is touched.
        check_access(settings.profile.kafka)
    stop = stop or threading.Event()
    rounds = [[layer] for layer in layers] if available_now else [list(layers)]
    with (
        stream_locks(settings, stream_ids(settings, sources, layers, gold_tables), owner),
        ProgressRecorder(spark, settings) as recorder,
    ):
        for round_layers in rounds:
            if stop.is_set():
                break
            queries = start_streams(
                spark,
                settings,
                sources,
                available_now=available_now,
                layers=round_layers,
                gold_tables=gold_tables,
            )
            try:
                watch(queries, stop=stop)
            except StreamingQueryException as exc:
                raise explain_failure(",".join(round_layers), exc) from None
            finally:
                stop_queries(queries, asked_by=spark if stop.is_set() else None)
                if not recorder.wait_for_termination({str(q.id) for q in queries}):
                    log.warning(
                        "the progress of the last batches may be missing: Spark did not report the streams' end"
                    )
        return dict(recorder.rows_by_query)
