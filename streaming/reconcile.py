"""Reconciliation: does every record account for itself, and does gold equal its definition?

Per source topic: Kafka records (when Kafka answers) = bronze rows, and bronze = silver +
quarantine + duplicates (+ tombstones on a CDC topic). Per gold table: the rows it has that its
batch definition lacks, and the other way round. Both are zero at rest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming import plan
from streaming.config import Settings, Source
from streaming.delta_log import DeltaLogError, latest_version
from streaming.gold.definitions import GoldTable, evaluate, load_gold_tables, with_keys
from streaming.silver.streams import cdc_contract, event_contract
from streaming.tables import read_table
from streaming.visibility import visible_in_gold_ms


@dataclass(frozen=True)
class TopicCounts:
    topic: str
    kafka: int | None
    bronze: int
    silver: int | None = None
    quarantine: int | None = None
    duplicates: int | None = None
    tombstones: int | None = None
    settled_until: datetime | None = None  # counted up to this bronze ingest time

    @property
    def unaccounted(self) -> int:
        """bronze minus everything it became (0 when every record is accounted for)."""
        if self.silver is None:
            return 0
        parts = (self.silver, self.quarantine, self.duplicates, self.tombstones)
        return self.bronze - sum(p or 0 for p in parts)

    @property
    def ok(self) -> bool:
        return self.unaccounted == 0 and (self.kafka is None or self.kafka == self.bronze)


@dataclass(frozen=True)
class GoldDiff:
    table: str
    rows: int
    extra: int  # in gold, not in the definition
    missing: int  # in the definition, not in gold
    # Keys whose sources changed while they were compared: gold may rightly differ from the
    # definition as of the versions read; left to the next reconciliation.
    unsettled: int = 0

    @property
    def ok(self) -> bool:
        return self.extra == 0 and self.missing == 0


@dataclass
class Reconciliation:
    topics: list[TopicCounts] = field(default_factory=list)
    gold: list[GoldDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.topics) and all(g.ok for g in self.gold)

    def lines(self) -> list[str]:
        out = []
        for t in self.topics:
            kafka = "?" if t.kafka is None else f"{t.kafka:,}"
            line = f"{t.topic}: kafka {kafka}, bronze {t.bronze:,}"
            if t.silver is not None:
                line += f" = silver {t.silver:,} + quarantine {t.quarantine:,} + duplicates {t.duplicates:,}"
                if t.tombstones is not None:
                    line += f" + tombstones {t.tombstones:,}"
            out.append(line + ("  ok" if t.ok else f"  MISMATCH ({t.unaccounted:+,} unaccounted)"))
        for g in self.gold:
            state = "ok" if g.ok else f"MISMATCH ({g.extra:,} extra, {g.missing:,} missing)"
            moving = f" ({g.unsettled:,} keys changing while compared)" if g.unsettled else ""
            out.append(f"gold.{g.table}: {g.rows:,} rows, equal to its definition: {state}{moving}")
        return out


def _count(frame: DataFrame | None, topic: str | None = None) -> int:
    if frame is None:
        return 0
    if topic is not None:
        frame = frame.where(F.col("kafka_topic") == topic)
    return frame.count()


def reconcile(
    spark: SparkSession, settings: Settings, kafka_counts: dict[str, int] | None = None
) -> Reconciliation:
    """Counts per topic and differences per gold table (see the module docstring)."""
    result = Reconciliation()
    for source in settings.pipeline.sources:
        result.topics.append(
            reconcile_topic(spark, settings, source, (kafka_counts or {}).get(source.topic))
        )
    for table in load_gold_tables(settings):
        diff = reconcile_gold(spark, settings, table)
        if diff is not None:
            result.gold.append(diff)
    return result


def reconcile_topic(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    kafka_count: int | None = None,
    *,
    settled: bool = False,
) -> TopicCounts:
    """The counts of one source topic: bronze, and (with silver on) silver, quarantine,
    duplicates and, for CDC, tombstones. `kafka_count`: the records Kafka holds, if known.

    `settled`: count only the bronze records the silver stream has already processed, so a
    running pipeline reconciles too: the records bronze ingested up to the latest ingest time
    silver, quarantine or duplicates hold (bronze stamps each micro-batch with one ingest
    time, and silver reads bronze's commits in order). `settled_until` is that time.
    """
    events, cdc = event_contract(settings, source), cdc_contract(settings, source)
    silver_name = (
        events.silver_table
        if events
        else plan.cdc_tables(cdc.silver_table).changes
        if cdc
        else None
    )
    frames = {
        "bronze": read_table(spark, settings, f"bronze.{source.table_name}"),
        "silver": read_table(spark, settings, f"silver.{silver_name}") if silver_name else None,
        "quarantine": read_table(spark, settings, f"quarantine.{source.table_name}"),
        "duplicates": read_table(spark, settings, f"duplicates.{source.table_name}"),
    }
    if frames["silver"] is not None:
        frames["silver"] = frames["silver"].where(F.col("kafka_topic") == source.topic)
    until = None
    if settled:
        until = _latest_ingest(frames["silver"], frames["quarantine"], frames["duplicates"])
        frames = {
            name: (f.where(F.col("ingest_time") <= F.lit(until)) if until else f.limit(0))
            if f is not None
            else None
            for name, f in frames.items()
        }
    bronze = frames["bronze"]
    counts = TopicCounts(source.topic, kafka_count, _count(bronze), settled_until=until)
    if silver_name is None:
        return counts
    counts = replace(
        counts,
        silver=_count(frames["silver"]),
        quarantine=_count(frames["quarantine"]),
        duplicates=_count(frames["duplicates"]),
    )
    if cdc is not None:
        tombstones = bronze.where(F.col("value").isNull()).count() if bronze is not None else 0
        counts = replace(counts, tombstones=tombstones)
    return counts


def _latest_ingest(*frames: DataFrame | None) -> datetime | None:
    """The latest ingest_time in any of `frames` (None when they hold no rows)."""
    times = [
        row[0]
        for f in frames
        if f is not None
        for row in [f.agg(F.max("ingest_time")).first()]
        if row is not None and row[0] is not None
    ]
    return max(times) if times else None


# How long a reconciliation waits for a gold stream to read the source versions it compared.
SETTLE_S = 120.0


def reconcile_gold(
    spark: SparkSession,
    settings: Settings,
    table: GoldTable,
    *,
    settle_s: float = SETTLE_S,
    pinned: Mapping[str, int] | None = None,
) -> GoldDiff | None:
    """Rows of gold table `table` that its batch definition lacks and the other way round;
    None when the table does not exist yet. Raises ConfigError when a source table is missing.

    The definition is read as of the sources' versions when the reconciliation starts
    (`pinned`, by default their newest), while the streams may go on writing. Should gold and
    definition differ, the reconciliation waits (up to `settle_s`) for the gold stream to have
    read those versions, compares gold with the same definition again, and leaves out the keys whose
    sources changed after those versions: gold may rightly hold newer rows for them
    (`unsettled`). A key whose sources stood still and that still differs is a real error.
    """
    gold = read_table(spark, settings, f"gold.{table.name}")
    if gold is None:
        return None
    versions = dict(pinned) if pinned is not None else _newest_versions(settings, table)
    definition = evaluate(spark, settings, table, versions=versions or None)
    columns = definition.columns
    first = _differences(gold.select(*columns), definition)
    if first.extra == first.missing == 0 or not versions:
        return GoldDiff(table.name, gold.count(), first.extra, first.missing)
    _wait_for_gold(settings, table, versions, settle_s)
    gold = read_table(spark, settings, f"gold.{table.name}")
    assert gold is not None
    again = _differences(gold.select(*columns), definition)
    # Read once: three joins below use it, each would otherwise scan the sources twice.
    moved = _keys_changed_since(spark, settings, table, versions).localCheckpoint(eager=True)
    keys = [f"_gk_{k}" for k in sorted(table.keys)]
    extra, missing = (_gold_keys(rows, table) for rows in (again.extra_rows, again.missing_rows))
    unsettled = extra.unionByName(missing).join(moved, keys, "left_semi").distinct().count()
    extra, missing = (rows.join(moved, keys, "left_anti") for rows in (extra, missing))
    return GoldDiff(table.name, gold.count(), extra.count(), missing.count(), unsettled)


def _gold_keys(rows: DataFrame, table: GoldTable) -> DataFrame:
    """The gold keys of gold (or definition) rows, as columns _gk_<key>."""
    return rows.select(*[F.col(f"`{k}`").alias(f"_gk_{k}") for k in sorted(table.keys)])


@dataclass(frozen=True)
class _Differences:
    extra_rows: DataFrame
    missing_rows: DataFrame
    extra: int
    missing: int


def _differences(gold: DataFrame, definition: DataFrame) -> _Differences:
    extra_rows = gold.exceptAll(definition).localCheckpoint(eager=True)
    missing_rows = definition.exceptAll(gold).localCheckpoint(eager=True)
    return _Differences(extra_rows, missing_rows, extra_rows.count(), missing_rows.count())


def _newest_versions(settings: Settings, table: GoldTable) -> dict[str, int]:
    """Each source table's newest Delta version, from its log (local tables; {} otherwise:
    the reconciliation then compares the tables as they are, once)."""
    versions: dict[str, int] = {}
    for source in table.sources:
        try:
            version = latest_version(settings.table_path_by_name(source.table))
        except DeltaLogError:
            return {}
        if version is None:
            return {}
        versions[source.table] = version
    return versions


def _wait_for_gold(
    settings: Settings, table: GoldTable, versions: Mapping[str, int], settle_s: float
) -> None:
    """Until the gold stream's committed batches have read every source at `versions`, or
    `settle_s` passed (a stream that is not running reads nothing more: no wait then)."""
    checkpoint = settings.checkpoint_path(plan.GOLD, table.name)
    deadline = time.monotonic() + settle_s

    def caught_up() -> bool:
        return all(
            version in visible_in_gold_ms(checkpoint, settings.table_path_by_name(source))
            for source, version in versions.items()
        )

    try:
        while not caught_up() and time.monotonic() < deadline:
            time.sleep(1.0)
    except (DeltaLogError, OSError, ValueError):
        return  # no local checkpoint to read: compare as the tables are


def _keys_changed_since(
    spark: SparkSession, settings: Settings, table: GoldTable, versions: Mapping[str, int]
) -> DataFrame:
    """The gold keys of the rows each source gained after its version in `versions` (the
    sources are append-only: silver tables and CDC changes)."""
    keys = [f"_gk_{k}" for k in sorted(table.keys)]
    frames = []
    for source in table.sources:
        path = settings.table_path_by_name(source.table)
        now = spark.read.format("delta").load(path)
        then = spark.read.format("delta").option("versionAsOf", versions[source.table]).load(path)
        frames.append(with_keys(now.exceptAll(then), source).select(*keys))
    return reduce(lambda a, b: a.unionByName(b), frames).distinct()
