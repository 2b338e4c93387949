"""Reconciliation: does every record account for itself, and does gold equal its definition?

Per source topic: Kafka records (when Kafka answers) = bronze rows, and bronze = silver +
quarantine + duplicates (+ tombstones on a CDC topic). Per gold table: the rows it has that its
batch definition lacks, and the other way round. Both are zero at rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.config import Settings
from streaming.gold.definitions import evaluate, load_gold_tables
from streaming.silver.streams import cdc_contract, event_contract
from streaming.tables import read_table


@dataclass(frozen=True)
class TopicCounts:
    topic: str
    kafka: int | None
    bronze: int
    silver: int | None = None
    quarantine: int | None = None
    duplicates: int | None = None
    tombstones: int | None = None

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
            out.append(f"gold.{g.table}: {g.rows:,} rows, equal to its definition: {state}")
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
        bronze = read_table(spark, settings, f"bronze.{source.table_name}")
        counts = TopicCounts(source.topic, (kafka_counts or {}).get(source.topic), _count(bronze))
        events, cdc = event_contract(settings, source), cdc_contract(settings, source)
        quarantine = _count(read_table(spark, settings, f"quarantine.{source.table_name}"))
        duplicates = _count(read_table(spark, settings, f"duplicates.{source.table_name}"))
        if events is not None:
            silver = _count(
                read_table(spark, settings, f"silver.{events.silver_table}"), source.topic
            )
            counts = replace(counts, silver=silver, quarantine=quarantine, duplicates=duplicates)
        elif cdc is not None:
            changes = _count(
                read_table(spark, settings, f"silver.{cdc.silver_table}_changes"), source.topic
            )
            tombstones = bronze.where(F.col("value").isNull()).count() if bronze is not None else 0
            counts = replace(
                counts,
                silver=changes,
                quarantine=quarantine,
                duplicates=duplicates,
                tombstones=tombstones,
            )
        result.topics.append(counts)
    for table in load_gold_tables(settings):
        gold = read_table(spark, settings, f"gold.{table.name}")
        if gold is None:
            continue
        definition = evaluate(spark, settings, table)
        columns = definition.columns
        result.gold.append(
            GoldDiff(
                table.name,
                gold.count(),
                gold.select(*columns).exceptAll(definition).count(),
                definition.exceptAll(gold.select(*columns)).count(),
            )
        )
    return result
