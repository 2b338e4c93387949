"""Table maintenance against real Delta tables: streams that read a compacted table still get
every row exactly once; maintenance never runs twice on a table, and does only what cannot
fail a running stream's batches; Delta drops expired log entries once the retention is set;
freshness looks past maintenance commits."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from devstack.generator.customers import CustomerChanges
from devstack.generator.shop import FaultRates
from streaming.catalog import pipeline_tables
from streaming.config import Settings
from streaming.delta_log import COMMIT, live_files, local_path
from streaming.locks import stream_locks
from streaming.maintenance import MaintenanceResult, maintain_table
from streaming.quality.freshness import last_commit_time
from streaming.runner import run_streams
from streaming.tables import read_table
from tests.conftest import write_conf
from tests.gold_oracle import actual_gold, expected_gold, send_changes
from tests.helpers import START, SmallRow, produce_shop, small_rows, write_small_files
from tests.integration.test_silver_cdc import FIELDS
from tests.integration.test_silver_cdc import oracle as cdc_oracle

pytestmark = pytest.mark.integration


def commit_versions(path: str) -> list[int]:
    log = local_path(path) / "_delta_log"
    return sorted(int(p.name[:20]) for p in log.iterdir() if COMMIT.match(p.name))


def operations(spark: SparkSession, path: str) -> list[str]:
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, path).history().orderBy("version")
    return [r.operation for r in history.select("operation").collect()]


@pytest.fixture
def small(tmp_path: Path, unique: str) -> Settings:
    """A pipeline of one event topic (bronze, silver.orders, quarantine, duplicates), with a
    log retention of two weeks, so maintenance has a property to set."""
    return write_conf(
        tmp_path,
        topics=[f"t{unique}.orders"],
        pipeline={"maintenance": {"log_retention": "14 days"}},
    )


def test_streams_read_every_row_once_across_compactions_of_their_sources(
    spark: SparkSession, shop: Settings
) -> None:
    orders, payments, customers = shop.pipeline.sources
    database = CustomerChanges(
        81, START, faults=FaultRates.parse("duplicates=0.05"), initial=30, topic=customers.topic
    )
    events = produce_shop(shop, 300, seed=81, faults="all")
    changes = send_changes(shop, database, 40)
    run_streams(spark, shop, available_now=True)

    # New records reach bronze, and bronze is compacted before silver reads them: the
    # compaction rewrites files silver has read and files it has not read yet.
    events += produce_shop(shop, 300, seed=82, faults="all")
    changes += send_changes(shop, database, 40)
    run_streams(spark, shop, available_now=True, layers=("bronze",))
    compacted = maintain_layer(spark, shop, "bronze")
    assert all(r.files_compacted > 1 and r.files_after < r.files_before for r in compacted)
    run_streams(spark, shop, available_now=True, layers=("silver",))
    # And silver is compacted before gold reads it.
    compacted = maintain_layer(spark, shop, "silver")
    by_table = {r.table: r for r in compacted}
    assert by_table["silver.orders"].files_compacted > 1
    assert by_table["silver.customers_changes"].files_compacted > 1
    run_streams(spark, shop, available_now=True, layers=("gold",))

    # Every record of the event topics once, in silver, quarantine or duplicates.
    for source, silver in ((orders, "orders"), (payments, "payments")):
        landed: Counter[tuple[str, int, int]] = Counter()
        for qualified in (
            f"silver.{silver}",
            f"quarantine.{source.table_name}",
            f"duplicates.{source.table_name}",
        ):
            table = read_table(spark, shop, qualified)
            assert table is not None, qualified
            columns = ("kafka_topic", "kafka_partition", "kafka_offset")
            landed += Counter(tuple(r) for r in table.select(*columns).collect())
        sent = Counter((d.topic, d.partition, d.offset) for d in events if d.topic == source.topic)
        assert landed == sent, source.topic
    # The CDC tables (MERGEd, compacted) and gold, against oracles over what was sent.
    current = read_table(spark, shop, "silver.customers")
    assert current is not None
    expected_current, _ = cdc_oracle(changes)
    assert {r.customer_id: tuple(r[f] for f in FIELDS) for r in current.collect()} == (
        expected_current
    )
    assert actual_gold(spark, shop) == expected_gold(events, changes, orders.topic)
    # Compacting while a stream runs relies on the catalog's word that its stream appends
    # blindly: Delta's log must agree for every write the streams made.
    from delta.tables import DeltaTable

    blind = {t.qualified: t.path for t in pipeline_tables(shop) if t.blind_appends}
    written: set[str] = set()
    for qualified, path in blind.items():
        writes = (
            DeltaTable.forPath(spark, path)
            .history()
            .where("operation IN ('WRITE', 'STREAMING UPDATE')")
            .select("isBlindAppend")
            .collect()
        )
        assert all(w.isBlindAppend for w in writes), qualified
        written |= {qualified} if writes else set()
    assert {f"quarantine.{orders.table_name}", f"duplicates.{orders.table_name}"} < written
    assert {f"bronze.{s.table_name}" for s in shop.pipeline.sources} < written


def maintain_layer(spark: SparkSession, settings: Settings, layer: str) -> list[MaintenanceResult]:
    results = [
        maintain_table(spark, settings, t.qualified)
        for t in pipeline_tables(settings)
        if t.layer == layer
    ]
    assert results and all(r.skipped is None for r in results), [r.summary() for r in results]
    return results


def test_maintenance_never_runs_twice_at_once_on_a_table(
    spark: SparkSession, small: Settings
) -> None:
    bronze = small.table_path("bronze", small.pipeline.sources[0].table_name)
    write_small_files(spark, bronze, 4)
    qualified = f"bronze.{small.pipeline.sources[0].table_name}"

    with stream_locks(small, [f"maintenance:{qualified}"], "another maintenance run"):
        busy = maintain_table(spark, small, qualified)
    assert busy.skipped is not None and "another maintenance run" in busy.skipped
    assert live_files(bronze) == 4, "nothing was done"

    free = maintain_table(spark, small, qualified)
    assert free.skipped is None and (free.files_before, free.files_after) == (4, 1)
    assert live_files(bronze) == 1


def test_while_its_stream_runs_a_table_gets_only_what_cannot_fail_the_streams_batches(
    spark: SparkSession, small: Settings
) -> None:
    source = small.pipeline.sources[0]
    bronze, silver = f"bronze.{source.table_name}", "silver.orders"
    bronze_rows = write_small_files(spark, small.table_path_by_name(bronze), 5)
    silver_rows = write_small_files(spark, small.table_path_by_name(silver), 5)
    streams = [f"bronze:{source.topic}", f"silver:{source.topic}"]

    with stream_locks(small, streams, "a test's streams"):
        appended = maintain_table(spark, small, bronze)
        deduplicated = maintain_table(spark, small, silver)
    # bronze's stream appends blindly: compacted; silver's reads what it writes: not yet.
    assert (appended.files_compacted, appended.files_after) == (5, 1)
    assert (deduplicated.files_compacted, deduplicated.files_after) == (0, 5)
    assert any("OPTIMIZE waits" in n and "a test's streams" in n for n in deduplicated.notes)
    # A property change would fail any commit made meanwhile: the new retention waits. VACUUM
    # goes on: the table keeps removed files a week, as conf says.
    for result in (appended, deduplicated):
        assert result.log_retention == "interval 30 days"
        assert any("retention stays files 1 week, log 30 days" in n for n in result.notes)
        assert result.files_vacuumed == 0

    appended, deduplicated = (
        maintain_table(spark, small, bronze),
        maintain_table(spark, small, silver),
    )
    assert (deduplicated.files_compacted, deduplicated.files_after) == (5, 1)
    assert appended.log_retention == deduplicated.log_retention == "interval 14 days"
    assert not appended.notes and not deduplicated.notes
    assert small_rows(spark, small.table_path_by_name(bronze)) == sorted(bronze_rows)
    assert small_rows(spark, small.table_path_by_name(silver)) == sorted(silver_rows)


def test_delta_drops_expired_log_entries_once_maintenance_sets_the_retention(
    spark: SparkSession, tmp_path: Path, unique: str
) -> None:
    settings = write_conf(
        tmp_path,
        topics=[f"t{unique}.orders"],
        pipeline={"maintenance": {"tables": {"silver.orders": {"log_retention": "7 days"}}}},
    )
    kept = settings.table_path("bronze", f"t{unique}_orders")
    trimmed = settings.table_path("silver", "orders")
    rows: dict[str, list[SmallRow]] = {}
    for path in (kept, trimmed):
        rows[path] = write_small_files(spark, path, 12)  # versions 0-11, a checkpoint at 10
        assert (local_path(path) / "_delta_log" / f"{10:020d}.checkpoint.parquet").is_file()
        # Delta dates a log entry by its file's modification time: as if version n had been
        # written n minutes after a start ten days ago.
        ten_days_ago = time.time() - 10 * 86400
        for entry in (local_path(path) / "_delta_log").iterdir():
            if entry.is_file() and entry.name[:20].isdigit():
                written = ten_days_ago + 60 * int(entry.name[:20])
                os.utime(entry, (written, written))

    for qualified in (f"bronze.t{unique}_orders", "silver.orders"):
        maintain_table(spark, settings, qualified)
    # Delta cleans the log up after its next checkpoint (version 20) as writes go on.
    for path in (kept, trimmed):
        while commit_versions(path)[-1] < 20:
            rows[path] += write_small_files(spark, path, 1, first=100 + len(rows[path]))

    # 30 days (Delta's default) keeps the 10-day-old entries; 7 days drops those before the
    # expired checkpoint at version 10.
    assert commit_versions(kept)[0] == 0
    assert commit_versions(trimmed)[0] == 10
    assert "SET TBLPROPERTIES" in operations(spark, trimmed)
    assert "SET TBLPROPERTIES" not in operations(spark, kept), "the default needs no change"
    for path in (kept, trimmed):
        assert small_rows(spark, path) == sorted(rows[path])


def test_freshness_looks_past_the_commits_of_maintenance(
    spark: SparkSession, small: Settings
) -> None:
    bronze = f"bronze.{small.pipeline.sources[0].table_name}"
    path = small.table_path_by_name(bronze)
    write_small_files(spark, path, 3)
    written = last_commit_time(spark, path)

    result = maintain_table(spark, small, bronze)
    assert result.files_compacted == 3
    assert operations(spark, path)[-4:] == [
        "SET TBLPROPERTIES",
        "OPTIMIZE",
        "VACUUM START",
        "VACUUM END",
    ]
    assert last_commit_time(spark, path) == written
