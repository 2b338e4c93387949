"""Running the configured streams: start them, watch them, stop them cleanly.

Used by the CLI, the spark-submit jobs and the demo alike, so a stream behaves the same
however it is started.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from streaming import plan
from streaming.bronze import BRONZE_SCHEMA, start_bronze
from streaming.bronze import PARTITION_COLUMN as BRONZE_PARTITION
from streaming.bronze import query_name as bronze_query_name
from streaming.config import Settings, Source, Topology
from streaming.errors import HeadwaterError
from streaming.fused import query_name as fused_query_name
from streaming.fused import start_fused
from streaming.gold.definitions import GoldTable, load_gold_tables
from streaming.gold.maintain import ensure_gold_table, start_gold
from streaming.gold.maintain import query_name as gold_query_name
from streaming.kafka_client import check_access
from streaming.locks import stream_locks
from streaming.plan import BRONZE, GOLD, SILVER
from streaming.progress import ProgressRecorder
from streaming.silver.streams import (
    cdc_contract,
    ensure_cdc_tables,
    ensure_dead_letter_topic,
    ensure_event_tables,
    event_contract,
    start_silver_cdc,
    start_silver_events,
)
from streaming.silver.streams import query_name as silver_query_name
from streaming.tables import ensure_delta_table, has_path
from streaming.topology import last_topology, record_topology, restart_at_end

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
# How long a run waits for table maintenance to let go of a stream it wants.
MAINTENANCE_WAIT_S = 300.0


def effective_topology(settings: Settings, layers: Sequence[str]) -> Topology:
    """The topology a run of `layers` uses: conf's when it runs every layer; layered when it
    runs some layers alone (a layer's own job, a per-layer Dagster asset)."""
    if set(layers) == set(LAYERS):
        return settings.pipeline.topology
    return "layered"


def start_streams(
    spark: SparkSession,
    settings: Settings,
    sources: Sequence[Source],
    *,
    available_now: bool,
    layers: Sequence[str] = LAYERS,
    gold_tables: Sequence[str] | None = None,
    topology: Topology | None = None,
) -> list[StreamingQuery]:
    """Start the queries of `layers` for `sources` in `topology` (default: the run's, see
    `effective_topology`): fused, one query per source writing bronze and silver; layered,
    bronze for every source, silver for sources with a contract; gold per table in both. Queries start
    together (their tables are created first); on a failure, those started are stopped."""
    for layer in layers:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}")
    topology = topology or effective_topology(settings, layers)
    fused = topology == "fused"
    golds = gold_tables_for(settings, sources, gold_tables, fused=fused) if "gold" in layers else []
    if fused and "gold" in layers:
        # A gold table reads every silver table it is declared over, those of sources not in
        # this run included: they exist (empty at first) before it starts.
        feeding = [
            s for s in settings.pipeline.sources if s in sources or feeds(settings, s, golds)
        ]
        prepare_tables(spark, settings, feeding, golds, LAYERS)
    else:
        prepare_tables(spark, settings, sources, golds, layers)
    starters: list[Callable[[], StreamingQuery]] = []
    if fused:
        # One query per source writes its bronze and silver; gold follows as in layered.
        if "bronze" in layers:
            for source in sources:
                starters.append(
                    functools.partial(
                        start_fused, spark, settings, source, available_now=available_now
                    )
                )
        for table in golds:
            starters.append(
                functools.partial(start_gold, spark, settings, table, available_now=available_now)
            )
    else:
        for layer in layers:
            for source in sources:
                if layer == "bronze":
                    starters.append(
                        functools.partial(
                            start_bronze, spark, settings, source, available_now=available_now
                        )
                    )
                elif layer == "silver":
                    events = event_contract(settings, source)
                    if events is not None:
                        starters.append(
                            functools.partial(
                                start_silver_events,
                                spark,
                                settings,
                                source,
                                events,
                                available_now=available_now,
                            )
                        )
                    cdc = cdc_contract(settings, source)
                    if cdc is not None:
                        starters.append(
                            functools.partial(
                                start_silver_cdc,
                                spark,
                                settings,
                                source,
                                cdc,
                                available_now=available_now,
                            )
                        )
            if layer == "gold":
                for table in golds:
                    starters.append(
                        functools.partial(
                            start_gold, spark, settings, table, available_now=available_now
                        )
                    )
    return start_together(starters)


def prepare_tables(
    spark: SparkSession,
    settings: Settings,
    sources: Sequence[Source],
    golds: Sequence[GoldTable],
    layers: Sequence[str],
) -> None:
    """Create the tables the streams of `layers` write, layer by layer (a gold table's schema
    comes from its SQL over silver), so queries can start together and readers find every
    table at once."""
    if "bronze" in layers:
        for source in sources:
            path = settings.table_path(BRONZE, source.table_name)
            ensure_delta_table(spark, path, BRONZE_SCHEMA, BRONZE_PARTITION)
    if "silver" in layers:
        for source in sources:
            events, cdc = event_contract(settings, source), cdc_contract(settings, source)
            if events is not None:
                ensure_event_tables(spark, settings, source, events)
                ensure_dead_letter_topic(settings, source)
            if cdc is not None:
                ensure_cdc_tables(spark, settings, source, cdc)
    if "gold" in layers:
        for table in golds:
            ensure_gold_table(spark, settings, table)


def start_together(starters: Sequence[Callable[[], StreamingQuery]]) -> list[StreamingQuery]:
    """Run every starter at once (a query's start is mostly Spark planning and waiting on
    files: one after another, the last query of a pipeline started tens of seconds after the
    first); the queries in starter order. On any failure, stops those started and raises it."""
    if not starters:
        return []
    queries: list[StreamingQuery | None] = [None] * len(starters)
    errors: list[BaseException] = []

    def start(index: int) -> None:
        try:
            queries[index] = starters[index]()
        except BaseException as exc:  # reported below, after every start has ended
            errors.append(exc)

    threads = [
        threading.Thread(target=start, args=(i,), name=f"start-query-{i}", daemon=True)
        for i in range(len(starters))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [q for q in queries if q is not None]
    if errors:
        stop_queries(started)
        raise errors[0]
    return started


def stream_ids(
    settings: Settings,
    sources: Sequence[Source],
    layers: Sequence[str],
    gold_tables: Sequence[str] | None = None,
) -> list[str]:
    """The streams `start_streams` starts for these layers and sources, as lock names:
    bronze:<topic>, silver:<topic> (sources with a contract) and gold:<table> (in the fused
    topology every gold table the sources feed)."""
    fused = effective_topology(settings, layers) == "fused"
    ids: list[str] = []
    for layer in layers:
        if layer == "bronze":
            ids += [plan.stream_id(BRONZE, s.topic) for s in sources]
        elif layer == "silver":
            ids += [
                plan.stream_id(SILVER, s.topic)
                for s in sources
                if event_contract(settings, s) is not None or cdc_contract(settings, s) is not None
            ]
        elif layer == "gold":
            golds = gold_tables_for(settings, sources, gold_tables, fused=fused)
            ids += [plan.stream_id(GOLD, t.name) for t in golds]
    return ids


def query_names(settings: Settings) -> dict[str, str]:
    """The query that writes each stream of the whole pipeline as `headwater run` runs it, by
    stream id (bronze:<topic>, silver:<topic>, gold:<table>): in the fused topology a topic's
    query writes its bronze and silver streams; a gold table has its query in both."""
    sources = settings.pipeline.sources
    ids = stream_ids(settings, sources, LAYERS)
    if settings.pipeline.topology == "layered":
        names = {plan.stream_id(BRONZE, s.topic): bronze_query_name(s) for s in sources}
        names |= {plan.stream_id(SILVER, s.topic): silver_query_name(s) for s in sources}
    else:
        names = {
            plan.stream_id(layer, s.topic): fused_query_name(s)
            for s in sources
            for layer in LAYERS[:2]
        }
    names |= {
        plan.stream_id(GOLD, t.name): gold_query_name(t) for t in gold_tables_for(settings, sources)
    }
    return {stream: names[stream] for stream in ids}


def gold_tables_for(
    settings: Settings,
    sources: Sequence[Source],
    names: Sequence[str] | None = None,
    *,
    fused: bool = False,
) -> list[GoldTable]:
    """The gold tables whose sources are all silver tables of these sources' streams (only
    those named, when `names` is given). `fused`: every gold table one of them feeds (a run
    of the whole pipeline in the fused topology starts them all; a gold recompute reads the
    other sources' silver tables as they are)."""
    from streaming.silver.streams import cdc_contract, event_contract

    silver: set[str] = set()
    for source in sources:
        events, cdc = event_contract(settings, source), cdc_contract(settings, source)
        if events is not None:
            silver.add(f"silver.{events.silver_table}")
        if cdc is not None:
            silver |= {plan.qualified(SILVER, t) for t in plan.cdc_tables(cdc.silver_table).all}
    fed = any if fused else all
    return [
        t
        for t in load_gold_tables(settings)
        if fed(s.table in silver for s in t.sources) and (names is None or t.name in names)
    ]


def feeds(settings: Settings, source: Source, golds: Sequence[GoldTable]) -> bool:
    """Whether one of `golds` reads a silver table of `source`."""
    fed = {t.name for t in gold_tables_for(settings, [source], fused=True)}
    return any(t.name in fed for t in golds)


def rounds_of(layers: Sequence[str], topology: Topology, *, available_now: bool) -> list[list[str]]:
    """The layers each round of a run starts together: all at once when continuous; caught
    up one after another with availableNow (a layer reads all of the one before), the fused
    topology's bronze and silver in one round (one query writes both)."""
    if not available_now:
        return [list(layers)]
    if topology == "fused":
        groups = [[x for x in layers if x != "gold"], [x for x in layers if x == "gold"]]
        return [g for g in groups if g]
    return [[layer] for layer in layers]


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


def switching_sources(
    spark: SparkSession, settings: Settings, sources: Sequence[Source], topology: Topology
) -> list[Source]:
    """The sources whose streams last ran in the other topology (streaming/topology.py)."""
    switching = []
    for source in sources:
        last = last_topology(settings, source)
        if last is None and has_path(spark, settings.checkpoint_path(BRONZE, source.table_name)):
            last = "layered"  # run before topologies were recorded: there was only layered
        if last is not None and last != topology:
            switching.append(source)
    return switching


def switch_locks(settings: Settings) -> list[str]:
    """The locks a switch of topology takes: every stream of the pipeline (a gold table fed
    by several topics is written by all of them, so the whole pipeline switches at once)."""
    return stream_ids(settings, settings.pipeline.sources, LAYERS)


def switch_topology(
    spark: SparkSession,
    settings: Settings,
    topology: Topology,
    *,
    stop: threading.Event,
) -> None:
    """Make `topology` the one that runs the pipeline's streams: the sources that last ran in
    the other first drain it (an availableNow run of every layer), and a switch to layered
    restarts silver and gold at the end of the tables they read (streaming/topology.py).
    The caller holds `switch_locks` when a switch is due (`switching_sources`)."""
    sources = settings.pipeline.sources
    switching = switching_sources(spark, settings, sources, topology)
    if switching:
        old: Topology = "layered" if topology == "fused" else "fused"
        log.info(
            "switching %s from the %s to the %s topology: draining the %s streams first",
            ", ".join(s.topic for s in switching),
            old,
            topology,
            old,
        )
        for round_layers in rounds_of(LAYERS, old, available_now=True):
            run_round(
                spark,
                settings,
                switching,
                round_layers,
                available_now=True,
                stop=stop,
                topology=old,
            )
        if stop.is_set():
            return
        if topology == "layered":
            restart_at_end(spark, settings, layered_inputs(settings, switching))
    for source in sources:
        record_topology(settings, source, topology)


def layered_inputs(settings: Settings, sources: Sequence[Source]) -> dict[str, list[str]]:
    """The layered silver checkpoints of `sources`, each with the table its query reads (gold
    has the same queries in both topologies: its checkpoints carry over)."""
    inputs: dict[str, list[str]] = {}
    for source in sources:
        events, cdc = event_contract(settings, source), cdc_contract(settings, source)
        bronze = [settings.table_path(BRONZE, source.table_name)]
        if events is not None:
            inputs[settings.checkpoint_path("silver", events.silver_table)] = bronze
        if cdc is not None:
            inputs[settings.checkpoint_path("silver", cdc.silver_table)] = bronze
    return inputs


def run_round(
    spark: SparkSession,
    settings: Settings,
    sources: Sequence[Source],
    layers: Sequence[str],
    *,
    available_now: bool,
    stop: threading.Event,
    gold_tables: Sequence[str] | None = None,
    topology: Topology | None = None,
) -> set[str]:
    """Start the queries of `layers`, watch them until they end (availableNow) or `stop` is
    set, and stop them; returns their ids. Raises StreamFailed when one dies."""
    queries = start_streams(
        spark,
        settings,
        sources,
        available_now=available_now,
        layers=layers,
        gold_tables=gold_tables,
        topology=topology,
    )
    try:
        watch(queries, stop=stop)
    except StreamingQueryException as exc:
        raise explain_failure(",".join(layers), exc) from None
    finally:
        stop_queries(queries, asked_by=spark if stop.is_set() else None)
    return {str(q.id) for q in queries}


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
    topology = effective_topology(settings, layers)
    # A switch of topology drains every layer of the sources that switch: lock them all.
    locks = stream_ids(settings, sources, layers, gold_tables)
    if switching_sources(spark, settings, settings.pipeline.sources, topology):
        locks = list(dict.fromkeys([*locks, *switch_locks(settings)]))
    with (
        # Maintenance holds a table's stream for its compaction only: wait for it.
        stream_locks(settings, locks, owner, wait_for_maintenance_s=MAINTENANCE_WAIT_S),
        ProgressRecorder(spark, settings) as recorder,
    ):
        switch_topology(spark, settings, topology, stop=stop)
        for round_layers in rounds_of(layers, topology, available_now=available_now):
            if stop.is_set():
                break
            ran = run_round(
                spark,
                settings,
                sources,
                round_layers,
                available_now=available_now,
                stop=stop,
                gold_tables=gold_tables,
                topology=topology,
            )
            if not recorder.wait_for_termination(ran):
                log.warning(
                    "the progress of the last batches may be missing: Spark did not report the streams' end"
                )
        return dict(recorder.rows_by_query)
