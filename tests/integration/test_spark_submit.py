"""The bronze job runs under plain spark-submit, as on a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from streaming.config import Settings
from tests.helpers import bronze_records, expected_records, produce_shop

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_spark_submit_runs_the_bronze_job(spark: SparkSession, pipeline: Settings) -> None:
    sent = produce_shop(pipeline, 120, seed=9, faults="malformed=0.1")
    spark_submit = Path(sys.executable).parent / "spark-submit"
    done = subprocess.run(
        [
            str(spark_submit),
            "--master",
            "local[2]",
            "--jars",
            str(REPO / "infra/jars/spark/*"),
            str(REPO / "streaming/jobs/bronze.py"),
            "--conf",
            str(pipeline.conf_dir),
            "--available-now",
        ],
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert bronze_records(spark, pipeline) == expected_records(sent)
