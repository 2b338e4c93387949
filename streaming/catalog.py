"""Every table of the pipeline, read from conf: the one list orchestration, checks and
notebooks share.

A table knows its layer, location, the tables (or Kafka topic) it is made from, the stream
that writes it and the column whose day partitions it (None: rebuilt whole).
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming import plan
from streaming.config import Settings, Source
from streaming.gold.definitions import load_gold_tables
from streaming.silver.events import DUPLICATES, EVENT_DATE, QUARANTINE, SILVER
from streaming.silver.streams import cdc_contract, event_contract

BRONZE, GOLD = "bronze", "gold"


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    path: str
    description: str
    upstream: tuple[str, ...]  # qualified tables, or "kafka.<table_name>" for a topic
    stream: str  # the stream that writes it: "<layer>:<topic or gold table>"
    day_column: str | None = None
    topic: str | None = None  # the source topic it derives from (bronze/silver/quarantine)
    # Its stream only appends rows and never reads the table back, so Delta records blind
    # appends, which a compaction committed while the stream runs cannot fail. A stream that
    # reads the table it writes (to deduplicate, to MERGE) may commit a write that depends on
    # files it read, and a compaction that replaced them meanwhile fails that batch.
    blind_appends: bool = False
    # The column that says when a row's event happened, where the table has one.
    event_time: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.layer}.{self.name}"


def pipeline_tables(settings: Settings) -> list[Table]:
    """Bronze, silver, quarantine, duplicates and gold tables, in the order they flow."""
    tables: list[Table] = []
    for source in settings.pipeline.sources:
        tables.append(_bronze(settings, source))
    for source in settings.pipeline.sources:
        tables.extend(_silver(settings, source))
    for gold in load_gold_tables(settings):
        tables.append(
            Table(
                GOLD,
                gold.name,
                settings.table_path(GOLD, gold.name),
                gold.description,
                tuple(dict.fromkeys(s.table for s in gold.sources)),
                plan.stream_id(GOLD, gold.name),
                gold.day_column,
                event_time=gold.day_column,
            )
        )
    return tables


def _bronze(settings: Settings, source: Source) -> Table:
    return Table(
        BRONZE,
        source.table_name,
        settings.table_path(BRONZE, source.table_name),
        f"Every record of Kafka topic {source.topic}, as received, exactly once.",
        (f"kafka.{source.table_name}",),
        plan.stream_id(BRONZE, source.topic),
        topic=source.topic,
        # Replays MERGE into bronze too, but retry when a commit conflicts (streaming.replay).
        blind_appends=True,
    )


def _silver(settings: Settings, source: Source) -> list[Table]:
    bronze = f"{BRONZE}.{source.table_name}"
    stream = plan.stream_id(SILVER, source.topic)
    events, cdc = event_contract(settings, source), cdc_contract(settings, source)
    if events is None and cdc is None:
        return []
    day = EVENT_DATE if events is not None else None
    ingest_day = "ingest_date" if events is not None else None
    out: list[Table] = []
    if events is not None:
        out.append(
            Table(
                SILVER,
                events.silver_table,
                settings.table_path(SILVER, events.silver_table),
                f"Valid events of {source.topic} by their contract, once per event id.",
                (bronze,),
                stream,
                day,
                source.topic,
                event_time=events.fields.event_time,
            )
        )
    if cdc is not None:
        names = plan.cdc_tables(cdc.silver_table)
        for table_name, text in (
            (names.changes, "Every change of {t} (Debezium envelope flattened), once per change."),
            (
                names.current,
                "Current state of {t} (SCD1): upserts applied and deletes removed, in LSN order.",
            ),
            (names.history, "Every version of {t}'s rows with validity intervals (SCD2)."),
        ):
            out.append(
                Table(
                    SILVER,
                    table_name,
                    settings.table_path(SILVER, table_name),
                    text.format(t=source.topic),
                    (bronze,),
                    stream,
                    topic=source.topic,
                )
            )
    out.append(
        Table(
            QUARANTINE,
            source.table_name,
            settings.table_path(QUARANTINE, source.table_name),
            f"Records of {source.topic} that failed their contract: raw value, every failed "
            "rule, Kafka coordinates.",
            (bronze,),
            stream,
            ingest_day,
            source.topic,
            blind_appends=True,
        )
    )
    out.append(
        Table(
            DUPLICATES,
            source.table_name,
            settings.table_path(DUPLICATES, source.table_name),
            f"Records of {source.topic} whose id silver already held, with their Kafka "
            "coordinates.",
            (bronze,),
            stream,
            ingest_day,
            source.topic,
            blind_appends=True,
        )
    )
    return out
