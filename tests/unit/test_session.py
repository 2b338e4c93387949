"""The session factory wires Delta and the jars, and sizes Spark from conf."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from streaming.deploy import submit_command
from streaming.session import (
    DELTA_CATALOG,
    DELTA_EXTENSION,
    LOCAL_FS,
    LOCAL_FS_CONTEXT,
    spark_conf,
)
from tests.conftest import write_conf

pytestmark = pytest.mark.unit


def test_session_has_delta_and_test_sizing(spark: SparkSession) -> None:
    assert spark.conf.get("spark.sql.extensions") == DELTA_EXTENSION
    assert spark.conf.get("spark.sql.catalog.spark_catalog") == DELTA_CATALOG
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.sparkContext.master == "local[2]"
    assert spark.sparkContext.uiWebUrl is None  # UI off in tests
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.codegen.cache.maxEntries") == "2000"
    # Every test runs the pipeline's code the way it runs in production: evaluated, not
    # generated, where whole-stage code generation leaves an operator out.
    assert spark.conf.get("spark.sql.codegen.factoryMode") == "NO_CODEGEN"
    jars = spark.conf.get("spark.jars") or ""
    assert "delta-spark_4.2_2.13" in jars and "spark-sql-kafka-0-10_2.13" in jars


def test_defaults_size_shuffles_for_the_machine_and_extra_conf_wins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = write_conf(
        tmp_path,
        spark={"shuffle_partitions": None, "extra_conf": {"spark.sql.ansi.enabled": "false"}},
    )
    conf = spark_conf(settings)
    import os

    assert conf["spark.sql.shuffle.partitions"] == str(os.cpu_count())
    assert conf["spark.sql.ansi.enabled"] == "false"
    assert conf["spark.master"] == "local[2]"


def test_master_left_to_spark_submit_when_null(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = write_conf(tmp_path, spark={"master": None})
    assert "spark.master" not in spark_conf(settings)


def test_local_paths_go_through_headwater_file_system_unless_turned_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    on = spark_conf(write_conf(tmp_path / "on"))
    jar = on["spark.driver.extraClassPath"]
    assert jar.endswith(".jar") and "headwater-localfs-" in jar and jar in on["spark.jars"]
    assert on["spark.executor.extraClassPath"] == jar
    assert on["spark.hadoop.fs.file.impl"] == LOCAL_FS
    assert on["spark.hadoop.fs.AbstractFileSystem.file.impl"] == LOCAL_FS_CONTEXT
    # spark-submit reads the file system before the application runs: given from its start.
    command = submit_command(write_conf(tmp_path / "submit"), "silver", available_now=True)
    assert command[command.index("--driver-class-path") + 1] == jar
    assert f"spark.hadoop.fs.file.impl={LOCAL_FS}" in command
    off = spark_conf(write_conf(tmp_path / "off", spark={"fork_free_local_fs": False}))
    assert not {k for k in off if "extraClassPath" in k or k.startswith("spark.hadoop.fs.")}


def test_a_profile_class_path_joins_the_file_system_jar(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    theirs = "/opt/jdbc/driver.jar"
    extra = {"spark.driver.extraClassPath": theirs, "spark.executor.extraClassPath": theirs}
    settings = write_conf(tmp_path, spark={"extra_conf": extra})
    conf = spark_conf(settings)
    for key in extra:
        first, second = conf[key].split(os.pathsep)
        assert "headwater-localfs-" in first and second == theirs
    command = submit_command(settings, "gold", available_now=False)
    assert command[command.index("--driver-class-path") + 1] == conf["spark.driver.extraClassPath"]
    assert f"spark.executor.extraClassPath={conf['spark.executor.extraClassPath']}" in command
