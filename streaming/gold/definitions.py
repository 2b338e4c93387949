"""Gold tables declared once: conf/gold/<name>.yaml holds SQL over named views of silver.

The same declaration gives the batch definition (the SQL over whole tables) and the
incremental one (the SQL over the rows of the keys a micro-batch touched).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from streaming.config import Settings, parse_file
from streaming.errors import ConfigError
from streaming.tables import read_table


class GoldSource(BaseModel):
    """A view the gold SQL reads, and how its rows map to gold keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    view: str
    table: str = Field(
        description="qualified table, e.g. silver.orders; its new rows trigger recomputes"
    )
    kind: Literal["table", "cdc_current"] = "table"
    cdc_key: str | None = Field(None, description="cdc_current: the key of the CDC rows")
    keys: dict[str, str] = Field(description="gold key -> SQL expression over a row of this table")

    @model_validator(mode="after")
    def _cdc_key(self) -> GoldSource:
        if self.kind == "cdc_current" and not self.cdc_key:
            raise ValueError("a cdc_current source needs cdc_key")
        return self


class GoldTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    keys: tuple[str, ...]
    sources: tuple[GoldSource, ...]
    sql: str
    day_column: str | None = Field(
        None,
        description="a timestamp or date column of the result whose day partitions the table "
        "for backfills; none: the table is rebuilt whole",
    )

    @model_validator(mode="after")
    def _every_source_gives_every_key(self) -> GoldTable:
        for source in self.sources:
            if set(source.keys) != set(self.keys):
                raise ValueError(
                    f"source view '{source.view}' must give every gold key ({', '.join(self.keys)}), "
                    f"it gives {', '.join(source.keys) or 'none'}"
                )
        return self


def load_gold_tables(settings: Settings) -> list[GoldTable]:
    """Every conf/gold/*.yaml, by name; ConfigError naming file and field when invalid."""
    folder = settings.conf_dir / "gold"
    tables = (
        [parse_file(GoldTable, path) for path in sorted(folder.glob("*.yaml"))]
        if folder.is_dir()
        else []
    )
    for path, table in zip(
        sorted(folder.glob("*.yaml")) if folder.is_dir() else [], tables, strict=True
    ):
        if Path(path).stem != table.name:
            raise ConfigError(f"{path}: field 'name' is '{table.name}' but the file is {path.name}")
    return tables


def source_frame(
    spark: SparkSession, settings: Settings, source: GoldSource, version: int | None = None
) -> DataFrame:
    """The whole view: the table (as of Delta `version`, when given), or for cdc_current the
    state its changes lead to."""
    frame = (
        read_table(spark, settings, source.table)
        if version is None
        else spark.read.format("delta")
        .option("versionAsOf", version)
        .load(settings.table_path_by_name(source.table))
    )
    if frame is None:
        raise ConfigError(
            f"gold source table {source.table} does not exist yet: start its silver stream first"
        )
    if source.kind == "cdc_current":
        newest = Window.partitionBy(str(source.cdc_key)).orderBy(F.col("lsn").desc())
        frame = (
            frame.withColumn("_rank", F.row_number().over(newest))
            .where("_rank = 1 AND op != 'd'")
            .drop("_rank")
        )
    return frame


def key_columns(source: GoldSource) -> list[str]:
    return [f"_gk_{k}" for k in sorted(source.keys)]


def with_keys(frame: DataFrame, source: GoldSource) -> DataFrame:
    """`frame` plus the gold keys its rows map to (columns _gk_<key>)."""
    return frame.select(
        "*", *[F.expr(source.keys[k]).alias(f"_gk_{k}") for k in sorted(source.keys)]
    )


# A gold key that buckets a column of its source by time: date_trunc('<unit>', <column>).
_TIME_BUCKET = re.compile(r"^\s*date_trunc\(\s*'(\w+)'\s*,\s*`?(\w+)`?\s*\)\s*$", re.IGNORECASE)


_INTERVAL_UNITS = {"year", "month", "week", "day", "hour", "minute", "second"}


def evaluate(
    spark: SparkSession,
    settings: Settings,
    table: GoldTable,
    touched: DataFrame | None = None,
    versions: Mapping[str, int] | None = None,
) -> DataFrame:
    """The gold table's SQL over its sources; with `touched` (columns _gk_<key>) only over
    the source rows of those keys, which yields exactly those keys' gold rows; with
    `versions` (source table -> Delta version) over the sources as of those versions."""
    bounds = _time_bounds(table, touched) if touched is not None else {}
    for source in table.sources:
        frame = source_frame(spark, settings, source, (versions or {}).get(source.table))
        if touched is not None:
            frame = _pruned(frame, source, bounds)
            columns = key_columns(source)
            frame = (
                with_keys(frame, source)
                .join(touched.select(*columns), columns, "left_semi")
                .drop(*columns)
            )
        frame.createOrReplaceTempView(source.view)
    return spark.sql(table.sql)


def _time_bounds(table: GoldTable, touched: DataFrame) -> dict[str, tuple[object, object]]:
    """The earliest and latest touched value of each gold key that some source computes as a
    time bucket (one small job over the touched keys); {} when none does."""
    bucketed = sorted(
        {
            k
            for s in table.sources
            if s.kind == "table"
            for k, e in s.keys.items()
            if _TIME_BUCKET.match(e)
        }
    )
    if not bucketed:
        return {}
    row = touched.agg(
        *[F.min(f"_gk_{k}").alias(f"lo_{k}") for k in bucketed],
        *[F.max(f"_gk_{k}").alias(f"hi_{k}") for k in bucketed],
    ).first()
    if row is None:
        return {}
    return {k: (row[f"lo_{k}"], row[f"hi_{k}"]) for k in bucketed if row[f"lo_{k}"] is not None}


def _pruned(
    frame: DataFrame, source: GoldSource, bounds: dict[str, tuple[object, object]]
) -> DataFrame:
    """`frame` less the rows outside the touched time buckets: a filter on the bucketed
    column itself, which Delta answers from its files' statistics (data skipping), so a
    recompute reads the files of those minutes or days, not the whole table. It only adds to
    the exact key join that follows."""
    if source.kind != "table":
        return frame
    for key, expression in source.keys.items():
        found = _TIME_BUCKET.match(expression)
        if found is None or key not in bounds:
            continue
        unit, column = found.groups()
        if unit.lower() not in _INTERVAL_UNITS:
            continue  # an abbreviation or a quarter: no interval literal to bound it with
        lo, hi = bounds[key]
        frame = frame.where(
            (F.col(column) >= F.lit(lo))
            & (F.col(column) < F.lit(hi) + F.expr(f"INTERVAL 1 {unit.upper()}"))
        )
    return frame
