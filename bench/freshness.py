"""How fresh are silver and gold? A simple measurement over a lake the demo (or any run) filled.

For every row of silver.orders: the time from its Kafka timestamp to the commit of the Delta
version that added it (read from the table's _delta_log). For gold: the time from the Kafka
timestamp to the first gold.revenue_per_minute commit after the row's silver commit (the gold
query picks up silver's new rows in its next batch). For change data capture: the time from
the PostgreSQL commit to the change being visible in silver.customers and in
gold.customer_orders. Also the rate bronze
sustained.

    .venv/bin/python bench/freshness.py [--conf conf] [--profile local] [--since ISO-TIME]

Run it after `DEMO_SECONDS=120 .venv/bin/headwater demo --rate 100` (or while it runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.config import Settings, load_settings
from streaming.session import build_spark_session
from streaming.tables import read_table


def commits(path: str) -> dict[str, int]:
    """data file name -> commit timestamp (ms) of the version that added it."""
    added: dict[str, int] = {}
    for log in sorted(Path(path, "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        when = next((a["commitInfo"]["timestamp"] for a in actions if "commitInfo" in a), None)
        for action in actions:
            if "add" in action and when is not None:
                added[Path(action["add"]["path"]).name] = when
    return added


def commit_times(spark: SparkSession, path: str) -> list[int]:
    times = sorted(set(commits(path).values()))
    return times


def visible_at(spark: SparkSession, table: DataFrame, path: str) -> DataFrame:
    mapping = spark.createDataFrame(list(commits(path).items()), "file string, committed_ms long")
    return table.withColumn(
        "file", F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1)
    ).join(mapping, "file")


def percentiles(frame: DataFrame, column: str) -> tuple[float, float, int]:
    row = frame.agg(
        F.percentile_approx(column, 0.5, 10000).alias("p50"),
        F.percentile_approx(column, 0.99, 10000).alias("p99"),
        F.count("*").alias("n"),
    ).first()
    assert row is not None
    return row.p50 / 1000, row.p99 / 1000, row.n


def cdc_latency(settings: Settings, since: str | None = None) -> None:
    """PostgreSQL commit (Debezium's source.ts_ms) -> visible in silver.customers and in each
    gold table the changes feed, and the events' Kafka timestamp -> visible in silver and
    gold (devstack.demo.FreshnessReport, as the demo prints it). Snapshot reads are left
    out: their ts_ms is the snapshot's, not a commit's."""
    from datetime import UTC, datetime

    from devstack.demo import FreshnessReport

    since_ms = 0
    if since:
        moment = datetime.fromisoformat(since)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # UTC unless it says
        since_ms = int(moment.timestamp() * 1000)
    for line in FreshnessReport(settings, since_ms).lines():
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conf", default=None)
    parser.add_argument("--profile", default=None)
    parser.add_argument(
        "--since",
        default=None,
        help="only rows from this UTC time on (ISO 8601), e.g. the last demo run's start",
    )
    args = parser.parse_args()
    settings: Settings = load_settings(args.conf, args.profile)
    spark = build_spark_session(settings, ui=False)
    silver_path = settings.table_path("silver", "orders")
    silver = read_table(spark, settings, "silver.orders")
    if silver is not None and args.since:
        silver = silver.where(F.col("kafka_timestamp") >= F.lit(args.since).cast("timestamp"))
    gold_path = settings.table_path("gold", "revenue_per_minute")
    progress = read_table(spark, settings, "ops.stream_progress")
    if silver is None or progress is None:
        raise SystemExit("no silver.orders or ops.stream_progress yet: run the demo first")

    rows = visible_at(spark, silver, silver_path).withColumn(
        "to_silver_ms", F.col("committed_ms") - F.unix_millis("kafka_timestamp")
    )
    p50, p99, n = percentiles(rows, "to_silver_ms")
    print(
        f"Kafka timestamp -> visible in silver.orders: p50 {p50:.1f} s, p99 {p99:.1f} s over {n:,} rows"
    )

    gold_commits = commit_times(spark, gold_path) if Path(gold_path, "_delta_log").is_dir() else []
    if gold_commits:
        gold_times = spark.createDataFrame([(t,) for t in gold_commits], "gold_ms long")
        to_gold = (
            rows.join(gold_times, F.col("gold_ms") >= F.col("committed_ms"))
            .groupBy("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")
            .agg(F.min("gold_ms").alias("gold_ms"))
            .withColumn("to_gold_ms", F.col("gold_ms") - F.unix_millis("kafka_timestamp"))
        )
        p50, p99, n = percentiles(to_gold, "to_gold_ms")
        print(
            f"Kafka timestamp -> reflected in gold.revenue_per_minute: p50 {p50:.1f} s, p99 {p99:.1f} s over {n:,} rows"
        )

    cdc_latency(settings, args.since)

    bronze = progress.where(
        F.col("query_name").startswith("bronze_") & (F.col("num_input_rows") > 0)
    )
    span = bronze.agg(
        F.sum("num_input_rows").alias("rows"),
        (F.max(F.unix_millis("batch_timestamp")) - F.min(F.unix_millis("batch_timestamp"))).alias(
            "ms"
        ),
    ).first()
    if span is not None and span.ms:
        print(
            f"bronze ingested {span.rows:,} records over {span.ms / 1000:.0f} s: {span.rows / (span.ms / 1000):,.0f} records/s"
        )
    spark.stop()


if __name__ == "__main__":
    main()
