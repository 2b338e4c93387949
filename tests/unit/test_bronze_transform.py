"""to_bronze keeps every Kafka field as received and adds ingest time and date."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from streaming.bronze import BRONZE_COLUMNS, to_bronze

pytestmark = pytest.mark.unit

KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
    "timestampType int, headers array<struct<key: string, value: binary>>"
)


def test_bronze_rows_are_kafka_records_untouched(spark: SparkSession) -> None:
    sent = datetime(2026, 11, 24, 23, 59, 59)
    records = spark.createDataFrame(
        [
            (b"O1", b'{"event_id": "e1"}', "shop.orders", 0, 41, sent, 0, [("producer", b"gen")]),
            (b"O1", b"\xff\xfe not json", "shop.orders", 0, 42, sent, 0, []),
            (None, None, "shop.orders", 2, 0, sent, 1, None),
        ],
        KAFKA_SCHEMA,
    )
    ingested = datetime(2026, 11, 25, 0, 0, 1)
    bronze = to_bronze(records, ingest_time=F.lit(ingested))
    assert tuple(bronze.columns) == BRONZE_COLUMNS
    expected = spark.createDataFrame(
        [
            (
                b"O1",
                b'{"event_id": "e1"}',
                [("producer", b"gen")],
                "shop.orders",
                0,
                41,
                sent,
                0,
                ingested,
                date(2026, 11, 25),
            ),
            (
                b"O1",
                b"\xff\xfe not json",
                [],
                "shop.orders",
                0,
                42,
                sent,
                0,
                ingested,
                date(2026, 11, 25),
            ),
            (None, None, None, "shop.orders", 2, 0, sent, 1, ingested, date(2026, 11, 25)),
        ],
        "key binary, value binary, headers array<struct<key: string, value: binary>>, topic string, "
        "partition int, offset long, kafka_timestamp timestamp, kafka_timestamp_type int, "
        "ingest_time timestamp, ingest_date date",
    )
    assertDataFrameEqual(bronze, expected)


def test_default_ingest_time_is_the_batch_time(spark: SparkSession) -> None:
    records = spark.createDataFrame(
        [(b"k", b"v", "t", 0, 0, datetime(2026, 1, 1), 0, [])], KAFKA_SCHEMA
    )
    row = to_bronze(records).first()
    assert row is not None
    assert row.ingest_date == row.ingest_time.date()
    assert abs((datetime.now() - row.ingest_time).total_seconds()) < 300
