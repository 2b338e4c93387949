"""Asset checks of every table, from conf: expectations (Great Expectations), reconciliation
and freshness. A new topic in conf/pipeline.yaml (and its contract) gets its checks with no
change here.

One multi-asset check per table holds that table's checks, so one Spark read serves its
error and warn expectations, and a blocking check on silver never waits on a gold table's
checks (one op over several tables would make a cycle with the assets between them).
"""

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetCheckExecutionContext

from orchestration.defs.alerts import alert
from orchestration.defs.freshness import FRESH_LAYERS
from orchestration.defs.keys import table_key
from orchestration.defs.resources import HeadwaterResource
from streaming import plan
from streaming.catalog import GOLD, Table, pipeline_tables
from streaming.config import Settings, Source
from streaming.errors import ConfigError
from streaming.gold.definitions import GoldTable, load_gold_tables
from streaming.quality.expectations import ExpectationSpec, Outcome, latest_days, table_specs
from streaming.quality.expectations import validate as validate_expectations
from streaming.quality.freshness import Freshness, last_commit_time, newest_kafka_time
from streaming.reconcile import reconcile_gold, reconcile_topic
from streaming.silver.events import SILVER
from streaming.silver.streams import cdc_contract, event_contract
from streaming.tables import read_table

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

EXPECTATIONS_ERROR = "expectations_error"
EXPECTATIONS_WARN = "expectations_warn"
RECONCILIATION = "reconciliation"
FRESHNESS = "freshness"
LATEST_DAYS = 2  # day-partitioned tables: expectations run over the latest days present
QUALITY_JOB = "headwater_quality"
# The order of a quality run's steps (one process runs them one after another, a table's
# checks taking seconds to tens of seconds while the streams run): silver first, where the
# contracts' rules are, then gold, then the rest.
LAYER_PRIORITY = {"silver": 3, "gold": 2, "bronze": 1}


def quality_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    """The checks of every table of conf, one multi-asset check per table that has any."""
    reconciled = _reconciled_tables(settings)
    checks = []
    for table in pipeline_tables(settings):
        check = _table_checks(settings, table, reconciled.get(table.qualified))
        if check is not None:
            checks.append(check)
    return checks


def quality_job_and_cadence(
    settings: Settings,
) -> tuple["UnresolvedAssetJobDefinition", dg.SensorDefinition]:
    """The job `headwater_quality` running every quality check (in one process, so one
    SparkSession serves them all) and the sensor that runs it every `checks_every_minutes`
    of conf, in both modes, the first time at its first tick."""
    job = dg.define_asset_job(
        QUALITY_JOB,
        selection=dg.AssetSelection.checks(*quality_checks(settings)),
        description="Expectations, reconciliation and freshness of every table.",
        executor_def=dg.in_process_executor,
    )
    every_s = settings.pipeline.orchestration.checks_every_minutes * 60

    @dg.sensor(
        name=f"{QUALITY_JOB}_cadence",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Run every quality check every {every_s / 60:g} minutes (conf: "
        "orchestration.checks_every_minutes), the first time soon after Dagster starts.",
    )
    def _cadence(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return due_check_run(context.instance, every_s, time.time())

    return job, _cadence


def due_check_run(
    instance: dg.DagsterInstance, every_s: float, now: float
) -> dg.RunRequest | dg.SkipReason:
    """A run of the quality job when none is going and the last one began `every_s` ago or
    more (or there was none)."""
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=QUALITY_JOB), limit=1)
    if records:
        last = records[0]
        if not last.dagster_run.is_finished:
            return dg.SkipReason(f"quality run {last.dagster_run.run_id} is still going")
        began = last.create_timestamp.timestamp()
        if now - began < every_s:
            return dg.SkipReason(
                f"the last quality run began {now - began:,.0f} s ago; the next is due after "
                f"{every_s:,.0f} s"
            )
    return dg.RunRequest(run_key=f"quality:{int(now)}")


def _reconciled_tables(settings: Settings) -> dict[str, Source | GoldTable]:
    """Tables that reconcile, by qualified name: the silver table of each event topic and
    the changes table of each CDC topic (with their source), and every gold table."""
    out: dict[str, Source | GoldTable] = {}
    for source in settings.pipeline.sources:
        events, cdc = event_contract(settings, source), cdc_contract(settings, source)
        if events is not None:
            out[f"{SILVER}.{events.silver_table}"] = source
        if cdc is not None:
            out[plan.qualified(SILVER, plan.cdc_tables(cdc.silver_table).changes)] = source
    for gold in load_gold_tables(settings):
        out[f"{GOLD}.{gold.name}"] = gold
    return out


def _table_checks(
    settings: Settings, table: Table, reconciled: Source | GoldTable | None
) -> dg.AssetChecksDefinition | None:
    key = table_key(table)
    specs = table_specs(settings, table.qualified)
    errors = [s for s in specs if s.criticality == "error"]
    warnings = [s for s in specs if s.criticality == "warn"]
    window = (
        f"rows of the latest {LATEST_DAYS} days by {table.day_column}"
        if table.day_column
        else "the whole table"
    )
    checks: list[dg.AssetCheckSpec] = []
    if errors:
        checks.append(
            dg.AssetCheckSpec(
                EXPECTATIONS_ERROR,
                asset=key,
                blocking=True,
                description=f"{len(errors)} error-level expectations over {window}; a failure "
                "stops downstream assets.",
            )
        )
    if warnings:
        checks.append(
            dg.AssetCheckSpec(
                EXPECTATIONS_WARN,
                asset=key,
                description=f"{len(warnings)} warn-level expectations over {window}.",
            )
        )
    if reconciled is not None:
        what = (
            "gold equals its batch definition (no extra, no missing rows)"
            if isinstance(reconciled, GoldTable)
            else f"bronze = silver + quarantine + duplicates for topic {reconciled.topic}"
        )
        checks.append(dg.AssetCheckSpec(RECONCILIATION, asset=key, description=what))
    if table.layer in FRESH_LAYERS:
        sla = settings.pipeline.orchestration.freshness.sla_minutes(table.qualified)
        checks.append(
            dg.AssetCheckSpec(
                FRESHNESS,
                asset=key,
                description=f"The newest data (its Kafka time, else the last Delta commit) is at most "
                f"{sla:g} minutes old.",
            )
        )
    if not checks:
        return None

    @dg.multi_asset_check(
        name=f"{table.layer}_{table.name}_checks",
        specs=checks,
        can_subset=True,
        description=f"Quality checks of {table.qualified}.",
        op_tags={"dagster/priority": str(LAYER_PRIORITY.get(table.layer, 0))},
    )
    def _checks(
        context: AssetCheckExecutionContext, headwater: HeadwaterResource
    ) -> Iterator[dg.AssetCheckResult]:
        """Expectations, reconciliation and freshness of one table."""
        chosen = {k.name for k in context.selected_asset_check_keys}
        spark = headwater.spark()
        results: list[dg.AssetCheckResult] = []
        if chosen & {EXPECTATIONS_ERROR, EXPECTATIONS_WARN}:
            levels = [
                (name, level)
                for name, level in ((EXPECTATIONS_ERROR, errors), (EXPECTATIONS_WARN, warnings))
                if name in chosen
            ]
            results.extend(expectation_results(spark, settings, table, levels))
        if RECONCILIATION in chosen and reconciled is not None:
            results.append(reconciliation_result(spark, settings, table, reconciled))
        if FRESHNESS in chosen:
            sla = settings.pipeline.orchestration.freshness.sla_minutes(table.qualified)
            found = Freshness(
                table.qualified,
                last_commit_time(spark, table.path),
                sla,
                datetime.now(UTC),
                newest_kafka_time(spark, table.path),
            )
            results.append(freshness_result(key, found))
        for result in results:
            if not result.passed:
                _alert(context, settings, table, result)
            yield result

    return _checks


def expectation_results(
    spark: Any,
    settings: Settings,
    table: Table,
    levels: Sequence[tuple[str, Sequence[ExpectationSpec]]],
) -> list[dg.AssetCheckResult]:
    """One result per (check name, its expectations), from one GX validation of the table."""
    key = table_key(table)
    frame = read_table(spark, settings, table.qualified)
    if frame is None:
        return [
            dg.AssetCheckResult(
                asset_key=key,
                check_name=name,
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{table.qualified} does not exist yet",
                metadata={"table_exists": False},
            )
            for name, _ in levels
        ]
    days: list[Any] = []
    if table.day_column:
        frame, days = latest_days(frame, table.day_column, LATEST_DAYS)
    outcomes = validate_expectations(frame, [s for _, specs in levels for s in specs])
    rows = max((o.element_count for o in outcomes), default=0)
    results = []
    for name, specs in levels:
        names = {s.name for s in specs}
        mine = [o for o in outcomes if o.spec.name in names]
        failed = [o for o in mine if not o.success]
        severity = (
            dg.AssetCheckSeverity.ERROR
            if name == EXPECTATIONS_ERROR
            else dg.AssetCheckSeverity.WARN
        )
        metadata: dict[str, Any] = {
            "rows_checked": dg.MetadataValue.int(rows),
            "days_checked": dg.MetadataValue.text(
                ", ".join(str(d) for d in days) if table.day_column else "whole table"
            ),
            "expectations": dg.MetadataValue.md(_outcome_table(mine)),
            "unexpected": dg.MetadataValue.json(
                {
                    o.spec.name: {
                        "column": o.spec.column,
                        "unexpected_count": o.unexpected_count,
                        "sample": list(o.unexpected_sample),
                        **({"error": o.exception} if o.exception else {}),
                    }
                    for o in failed
                }
            ),
        }
        metadata.update(
            {f"{o.spec.name} unexpected": dg.MetadataValue.int(o.unexpected_count) for o in mine}
        )
        summary = (
            f"{len(failed)} of {len(mine)} expectations failed: "
            + ", ".join(f"{o.spec.name} ({o.unexpected_count} rows)" for o in failed)
            if failed
            else f"all {len(mine)} expectations hold over {rows} rows"
        )
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=name,
                passed=not failed,
                severity=severity,
                description=summary,
                metadata=metadata,
            )
        )
    return results


def reconciliation_result(
    spark: Any, settings: Settings, table: Table, reconciled: Source | GoldTable
) -> dg.AssetCheckResult:
    """Silver: every bronze record silver has processed is in silver, quarantine or
    duplicates (or a tombstone). Gold: the table equals its batch definition."""
    key = table_key(table)
    if isinstance(reconciled, GoldTable):
        try:
            diff = reconcile_gold(spark, settings, reconciled)
        except ConfigError as exc:
            return _missing(key, str(exc))
        if diff is None:
            return _missing(key, f"{table.qualified} does not exist yet")
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=RECONCILIATION,
            passed=diff.ok,
            description=f"{diff.rows} rows; {diff.extra} extra, {diff.missing} missing "
            "against the batch definition"
            + (
                f" ({diff.unsettled} keys changing in silver while compared, left to the next run)"
                if diff.unsettled
                else ""
            ),
            metadata={
                "rows": dg.MetadataValue.int(diff.rows),
                "extra": dg.MetadataValue.int(diff.extra),
                "missing": dg.MetadataValue.int(diff.missing),
                "unsettled_keys": dg.MetadataValue.int(diff.unsettled),
            },
        )
    counts = reconcile_topic(spark, settings, reconciled, settled=True)
    parts = {
        "bronze": counts.bronze,
        "silver": counts.silver,
        "quarantine": counts.quarantine,
        "duplicates": counts.duplicates,
        "tombstones": counts.tombstones,
        "unaccounted": counts.unaccounted,
    }
    metadata: dict[str, Any] = {
        name: dg.MetadataValue.int(value) for name, value in parts.items() if value is not None
    }
    if counts.settled_until is not None:
        metadata["settled_until"] = dg.MetadataValue.text(counts.settled_until.isoformat())
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=RECONCILIATION,
        passed=counts.ok,
        description=f"{reconciled.topic}: {counts.unaccounted:+,} bronze records unaccounted",
        metadata=metadata,
    )


def freshness_result(key: dg.AssetKey, found: Freshness) -> dg.AssetCheckResult:
    """Freshness fails with severity WARN: a quiet topic commits nothing and is stale yet
    correct, and what is in the table is still right; the alert tells the team either way,
    and ERROR stays for data that is wrong (broken expectations, records unaccounted)."""
    return dg.AssetCheckResult(asset_key=key, **_freshness_verdict(found))


def freshness_evaluation(key: dg.AssetKey, found: Freshness) -> dg.AssetCheckEvaluation:
    """The freshness check's result as a runless event (the supervisor's, at each tick), by
    the same rule and with the same metadata as `freshness_result`."""
    return dg.AssetCheckEvaluation(asset_key=key, **_freshness_verdict(found))


def _freshness_verdict(found: Freshness) -> dict[str, Any]:
    return {
        "check_name": FRESHNESS,
        "passed": found.ok,
        "severity": dg.AssetCheckSeverity.WARN,
        "description": found.describe(),
        "metadata": _freshness_metadata(found),
    }


def _freshness_metadata(found: Freshness) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "sla_minutes": dg.MetadataValue.float(found.sla_minutes),
        "checked_at": dg.MetadataValue.text(found.now.isoformat()),
        "table_exists": found.last_commit is not None,
    }
    if found.last_commit is not None and found.minutes_stale is not None:
        metadata["last_commit"] = dg.MetadataValue.text(found.last_commit.isoformat())
        # Unrounded: an SLA can be under a minute, and a breach must show a figure above it.
        metadata["minutes_stale"] = dg.MetadataValue.float(found.minutes_stale)
    if found.newest_data is not None:
        metadata["newest_kafka_time"] = dg.MetadataValue.text(found.newest_data.isoformat())
    return metadata


def _missing(key: dg.AssetKey, why: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=RECONCILIATION,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=why,
        metadata={"table_exists": False},
    )


def _outcome_table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| expectation | column | result | unexpected | sample |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        sample = ", ".join(repr(v) for v in o.unexpected_sample[:5]).replace("|", "\\|")
        state = "ok" if o.success else ("error: " + o.exception if o.exception else "FAILED")
        lines.append(
            f"| {o.spec.name} | {o.spec.column} | {state} | {o.unexpected_count} | {sample} |"
        )
    return "\n".join(lines)


def _alert(
    context: AssetCheckExecutionContext,
    settings: Settings,
    table: Table,
    result: dg.AssetCheckResult,
) -> None:
    details: Mapping[str, Any] = {
        "table": table.qualified,
        "check": result.check_name,
        "severity": result.severity.value,
        "description": result.description,
        "metadata": {k: getattr(v, "value", v) for k, v in result.metadata.items()},
    }
    alert(
        settings,
        f"check {result.check_name} failed on {table.qualified}: {result.description}",
        details,
        logger=context.log,
    )
