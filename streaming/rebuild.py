"""Rebuilding silver and gold from bronze, for backfills.

Bronze is the record of everything Kafka delivered; every later table is a function of it.
A rebuild recomputes that function for some days (tables partitioned by day) or whole (state
tables: CDC current state and history, per-customer gold) and overwrites exactly that part
with Delta's `replaceWhere`, so running it twice leaves the same tables, and at rest it
leaves what the streams left.

The streams that read a rebuilt table skip the rewrite commits (`skipChangeCommits`): the
rows a rebuild replaces are downstream's to rebuild too, which is why a backfill takes the
tables downstream with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming import plan
from streaming.bronze import LAYER as BRONZE
from streaming.config import Settings, Source
from streaming.contracts.model import CdcContract, Contract
from streaming.contracts.spark import compile_contract
from streaming.errors import HeadwaterError
from streaming.gold.definitions import GoldTable, evaluate
from streaming.gold.maintain import ensure_gold_table
from streaming.silver.cdc import CHANGE_KEY, change_rows, current_rows, history_rows, parse_changes
from streaming.silver.events import (
    DUPLICATES,
    EVENT_DATE,
    QUARANTINE,
    SILVER,
    duplicate_rows,
    first_per_id,
    quarantine_rows,
    silver_rows,
)
from streaming.silver.streams import ensure_cdc_tables, ensure_event_tables
from streaming.tables import read_delta

log = logging.getLogger(__name__)

INGEST_DATE = "ingest_date"


class RebuildError(HeadwaterError):
    """A rebuild could not run (its input is missing)."""


@dataclass
class Rebuilt:
    """Rows each rebuilt table holds in the rebuilt part, by qualified table name."""

    rows: dict[str, int] = field(default_factory=dict)
    days: tuple[date, ...] = ()


def _in_days(column: Column, days: Sequence[date]) -> Column:
    return column.isin([d.isoformat() for d in days])


def _days_predicate(column: str, days: Sequence[date]) -> str:
    listed = ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(set(days)))
    return f"`{column}` IN ({listed})"


def _replace_days(rows: DataFrame, path: str, column: str, days: Sequence[date]) -> int:
    """Overwrite the rows of `days` (by date column `column`) with `rows`; returns their count."""
    rows = rows.localCheckpoint(eager=True)
    (
        rows.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", _days_predicate(column, days))
        .save(path)
    )
    return rows.count()


def _replace_all(rows: DataFrame, path: str) -> int:
    rows = rows.localCheckpoint(eager=True)
    rows.write.format("delta").mode("overwrite").save(path)
    return rows.count()


def _bronze(spark: SparkSession, settings: Settings, source: Source) -> DataFrame:
    frame = read_delta(spark, settings.table_path(BRONZE, source.table_name))
    if frame is None:
        raise RebuildError(
            f"bronze.{source.table_name} does not exist: run the bronze stream of "
            f"{source.topic} before rebuilding from it"
        )
    return frame


def rebuild_event_days(
    spark: SparkSession,
    settings: Settings,
    source: Source,
    contract: Contract,
    days: Sequence[date],
) -> Rebuilt:
    """Recompute silver (by event date), quarantine and duplicates (by ingest date) of an
    event topic for `days` from all of its bronze table, and replace those days."""
    if not days:
        raise RebuildError("name at least one day to rebuild")
    ensure_event_tables(spark, settings, source, contract)
    checked = compile_contract(contract).apply(_bronze(spark, settings, source))
    checked = checked.localCheckpoint(eager=True)
    valid = silver_rows(checked, contract)
    firsts, later = first_per_id(valid, contract.fields.id)
    name = source.table_name
    silver = f"{SILVER}.{contract.silver_table}"
    out = Rebuilt(days=tuple(sorted(set(days))))
    out.rows[silver] = _replace_days(
        firsts.where(_in_days(F.col(EVENT_DATE), days)),
        settings.table_path(SILVER, contract.silver_table),
        EVENT_DATE,
        days,
    )
    out.rows[f"{QUARANTINE}.{name}"] = _replace_days(
        quarantine_rows(checked).where(_in_days(F.col(INGEST_DATE), days)),
        settings.table_path(QUARANTINE, name),
        INGEST_DATE,
        days,
    )
    out.rows[f"{DUPLICATES}.{name}"] = _replace_days(
        duplicate_rows(later, contract.fields.id).where(_in_days(F.col(INGEST_DATE), days)),
        settings.table_path(DUPLICATES, name),
        INGEST_DATE,
        days,
    )
    checked.unpersist()
    return out


def rebuild_cdc(
    spark: SparkSession, settings: Settings, source: Source, contract: CdcContract
) -> Rebuilt:
    """Recompute every table of a CDC topic from all of its bronze table: changes (once per
    change), current state (SCD1), history (SCD2), quarantine and duplicates."""
    ensure_cdc_tables(spark, settings, source, contract)
    parsed = parse_changes(_bronze(spark, settings, source), contract).localCheckpoint(eager=True)
    changes, later = first_per_id(change_rows(parsed, contract), CHANGE_KEY)
    changes = changes.localCheckpoint(eager=True)
    table, name = contract.silver_table, source.table_name
    names = plan.cdc_tables(table)
    coords = ["kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingest_time"]
    out = Rebuilt()
    out.rows[plan.qualified(SILVER, names.changes)] = _replace_all(
        changes, settings.table_path(SILVER, names.changes)
    )
    out.rows[f"{SILVER}.{table}"] = _replace_all(
        current_rows(changes, contract).where("op != 'd'").drop("op"),
        settings.table_path(SILVER, table),
    )
    out.rows[plan.qualified(SILVER, names.history)] = _replace_all(
        history_rows(changes, contract), settings.table_path(SILVER, names.history)
    )
    out.rows[f"{QUARANTINE}.{name}"] = _replace_all(
        quarantine_rows(parsed.where(~F.col("_tombstone"))), settings.table_path(QUARANTINE, name)
    )
    out.rows[f"{DUPLICATES}.{name}"] = _replace_all(
        later.select(
            F.col(CHANGE_KEY).alias("event_id"),
            *[F.col(c) for c in coords],
            F.to_date("ingest_time").alias(INGEST_DATE),
        ),
        settings.table_path(DUPLICATES, name),
    )
    parsed.unpersist()
    return out


def rebuild_gold(
    spark: SparkSession, settings: Settings, table: GoldTable, days: Sequence[date] | None
) -> Rebuilt:
    """Recompute a gold table from its definition: the rows of `days` (by the table's
    day_column) when it has one and days are given, else the whole table."""
    ensure_gold_table(spark, settings, table)
    rows = evaluate(spark, settings, table)
    path = settings.table_path("gold", table.name)
    out = Rebuilt(days=tuple(sorted(set(days or ()))))
    if table.day_column and days:
        day = F.to_date(F.col(table.day_column))
        rows = rows.where(_in_days(day, days)).localCheckpoint(eager=True)
        listed = ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(set(days)))
        rows.write.format("delta").mode("overwrite").option(
            "replaceWhere", f"to_date(`{table.day_column}`) IN ({listed})"
        ).save(path)
        out.rows[f"gold.{table.name}"] = rows.count()
    else:
        out.rows[f"gold.{table.name}"] = _replace_all(rows, path)
    return out
