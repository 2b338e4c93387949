"""Expectations of a table, generated from conf, and their validation with Great Expectations.

A silver event table's expectations come from its contract's latest version (the rules a new
row obeys: required -> not null, enum -> in set, minimum/maximum -> between, pattern -> regex,
plus its event id is unique); a CDC current-state table's from the contract's row schema (its
key is unique); every table may add more in conf/pipeline.yaml under
orchestration.expectations. Each keeps the criticality the stream gives the same rule
(`<field>.<keyword>`, the contract's criticality map, then the field's x-criticality, then
error), so the check Dagster runs and the quarantine inside the stream judge alike.

Only the latest version's rules: a backward-compatible contract (the gate in
streaming/contracts/compat.py) adds no rule an older row breaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from streaming.config import Expectation, Settings
from streaming.contracts.model import CdcContract, Contract, Criticality, VersionSchema
from streaming.silver.streams import cdc_contract, event_contract

Kind = Literal["not_null", "between", "in_set", "match_regex", "unique"]
SAMPLE_SIZE = 20  # unexpected values kept per expectation


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation on one column: `kind` with its GX arguments, and how bad a breach is."""

    name: str  # the rule id: <column>.<contract keyword or expectation kind>
    column: str
    kind: Kind
    args: Mapping[str, Any] = field(default_factory=dict)
    criticality: Criticality = "error"


@dataclass(frozen=True)
class Outcome:
    """The result of one expectation over a batch of rows."""

    spec: ExpectationSpec
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_sample: tuple[Any, ...] = ()
    exception: str | None = None  # why GX could not evaluate it (e.g. the column is missing)


def version_specs(
    version: VersionSchema, criticality: Mapping[str, Criticality], unique: str | None = None
) -> list[ExpectationSpec]:
    """The expectations a JSON Schema object implies (`unique`: a column whose values are
    unique in the table)."""
    specs: list[ExpectationSpec] = []

    def add(name: str, keyword: str, kind: Kind, args: Mapping[str, Any]) -> None:
        rule = f"{name}.{keyword}"
        level = criticality.get(rule) or version.properties[name].criticality or "error"
        specs.append(ExpectationSpec(rule, name, kind, dict(args), level))

    for name, prop in version.properties.items():
        if name in version.required and not prop.nullable:
            add(name, "required", "not_null", {})
        if prop.enum is not None:
            add(name, "enum", "in_set", {"value_set": tuple(prop.enum)})
        for keyword, bound, arg, strict in (
            ("minimum", prop.minimum, "min_value", False),
            ("maximum", prop.maximum, "max_value", False),
            ("exclusiveMinimum", prop.exclusiveMinimum, "min_value", True),
            ("exclusiveMaximum", prop.exclusiveMaximum, "max_value", True),
        ):
            if bound is not None:
                strict_arg = {f"strict_{arg[:3]}": True} if strict else {}
                add(name, keyword, "between", {arg: bound, **strict_arg})
        if prop.pattern is not None:
            add(name, "pattern", "match_regex", {"regex": prop.pattern})
    if unique is not None:
        add(unique, "unique", "unique", {})
    return specs


def event_specs(contract: Contract) -> list[ExpectationSpec]:
    """Expectations of an event topic's silver table: its latest version's rules, ids unique."""
    latest = contract.versions[contract.latest]
    return version_specs(latest, contract.criticality, unique=contract.fields.id)


def cdc_specs(contract: CdcContract) -> list[ExpectationSpec]:
    """Expectations of a CDC topic's current-state table: its row's rules, keys unique."""
    return version_specs(contract.row, contract.criticality, unique=contract.key)


def conf_specs(expectations: Sequence[Expectation]) -> list[ExpectationSpec]:
    """The extra expectations conf lists for a table, named <column>.<kind> (#2, #3... when
    a table lists the same kind on a column twice)."""
    specs: list[ExpectationSpec] = []
    seen: dict[str, int] = {}
    for e in expectations:
        base = f"{e.column}.{e.expectation}"
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}#{seen[base]}"
        args: dict[str, Any] = {}
        if e.expectation == "between":
            args = {k: v for k, v in (("min_value", e.min), ("max_value", e.max)) if v is not None}
        elif e.expectation == "in_set":
            args = {"value_set": tuple(e.values or ())}
        elif e.expectation == "match_regex":
            args = {"regex": e.regex or ""}
        specs.append(ExpectationSpec(name, e.column, e.expectation, args, e.criticality))
    return specs


def table_specs(settings: Settings, qualified: str) -> list[ExpectationSpec]:
    """Every expectation of table 'layer.table': its contract's (silver event and CDC
    current-state tables), then conf's. Raises ConfigError when a contract is invalid."""
    layer, _, name = qualified.partition(".")
    specs: list[ExpectationSpec] = []
    if layer == "silver":
        for source in settings.pipeline.sources:
            events, cdc = event_contract(settings, source), cdc_contract(settings, source)
            if events is not None and events.silver_table == name:
                specs.extend(event_specs(events))
            if cdc is not None and cdc.silver_table == name:
                specs.extend(cdc_specs(cdc))
    extra = settings.pipeline.orchestration.expectations.get(qualified, ())
    return specs + conf_specs(extra)


def latest_days(df: DataFrame, day_column: str, days: int = 2) -> tuple[DataFrame, list[date]]:
    """The rows of the latest `days` days that `df` holds by `day_column` (a date or a
    timestamp), and those days, newest first."""
    day = F.to_date(F.col(day_column))
    found = [
        r.day
        for r in df.select(day.alias("day"))
        .where(F.col("day").isNotNull())
        .distinct()
        .orderBy(F.desc("day"))
        .limit(days)
        .collect()
    ]
    return df.where(day.isin(found)), found


def validate(df: DataFrame, specs: Sequence[ExpectationSpec]) -> list[Outcome]:
    """Run `specs` over `df` as one Great Expectations suite; one Outcome per spec, in order.

    An expectation GX cannot evaluate (a missing column) fails with its `exception` set;
    nothing is raised for it.
    """
    if not specs:
        return []
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        ),
    )
    batch_definition = (
        context.data_sources.add_spark("headwater")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = gx.ExpectationSuite(name="headwater", expectations=[_gx(s) for s in specs])
    # Every expectation reads the rows again: read the table once.
    cached = df.persist()
    try:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": cached})
        # BASIC carries the partial unexpected list without SUMMARY's extra count per value.
        result = batch.validate(
            suite, result_format={"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE}
        )
    finally:
        cached.unpersist()
    by_name = {
        r.expectation_config.meta["headwater"]: r
        for r in result.results
        if r.expectation_config is not None
    }
    return [_outcome(spec, by_name[spec.name]) for spec in specs]


def _gx(spec: ExpectationSpec) -> Any:
    from great_expectations.expectations.core import (
        expect_column_values_to_be_between,
        expect_column_values_to_be_in_set,
        expect_column_values_to_be_unique,
        expect_column_values_to_match_regex,
        expect_column_values_to_not_be_null,
    )

    args = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.args.items()}
    kind = {
        "not_null": expect_column_values_to_not_be_null.ExpectColumnValuesToNotBeNull,
        "between": expect_column_values_to_be_between.ExpectColumnValuesToBeBetween,
        "in_set": expect_column_values_to_be_in_set.ExpectColumnValuesToBeInSet,
        "match_regex": expect_column_values_to_match_regex.ExpectColumnValuesToMatchRegex,
        "unique": expect_column_values_to_be_unique.ExpectColumnValuesToBeUnique,
    }[spec.kind]
    return kind(column=spec.column, meta={"headwater": spec.name}, **args)


def _outcome(spec: ExpectationSpec, result: Any) -> Outcome:
    info = result.exception_info or {}
    # A failed metric reports {metric id: {...}}; a clean run reports the flat form.
    problems = [info] if "raised_exception" in info else list(info.values())
    raised = [str(p.get("exception_message")) for p in problems if p.get("raised_exception")]
    found = result.result or {}
    return Outcome(
        spec,
        bool(result.success),
        int(found.get("element_count") or 0),
        int(found.get("unexpected_count") or 0),
        tuple(_plain(v) for v in (found.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]),
        "; ".join(raised) or None,
    )


def _plain(value: Any) -> Any:
    """A value as JSON shows it: numbers and text as they are, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
