"""The Spark driver's class-data-sharing archive: named after what it was made from, used by
every session when it exists, left out when it does not or conf turns it off."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from streaming.deploy import submit_command
from streaming.jvm_archive import archive_java_options, archive_path
from streaming.session import spark_conf
from tests.conftest import REPO, write_conf

pytestmark = pytest.mark.unit


def _jars(tmp_path: Path) -> Path:
    """A jar folder of this test: the repo's Spark jars, linked."""
    jars = tmp_path / "jars"
    jars.mkdir()
    for jar in (REPO / "infra/jars/spark").glob("*.jar"):
        (jars / jar.name).symlink_to(jar)
    return jars


def test_a_recorded_archive_is_used_by_sessions_and_spark_submit(tmp_path: Path) -> None:
    jars = _jars(tmp_path)
    settings = write_conf(tmp_path, spark={"jars_dir": str(jars)})
    assert archive_java_options(settings) == ""  # nothing recorded yet: Spark starts as before

    archive = archive_path(settings)
    assert archive.parent.parent == jars
    archive.parent.mkdir()
    archive.write_bytes(b"recorded")
    options = archive_java_options(settings)
    assert f"-XX:SharedArchiveFile={archive}" in options.split()
    assert "-Xlog:cds=off" in options.split()
    assert options in spark_conf(settings)["spark.driver.extraJavaOptions"]
    command = submit_command(settings, "bronze", available_now=True)
    assert options in command[command.index("--driver-java-options") + 1]

    off = write_conf(tmp_path, spark={"jars_dir": str(jars), "class_data_sharing": False})
    assert archive_java_options(off) == ""
    assert "SharedArchiveFile" not in spark_conf(off)["spark.driver.extraJavaOptions"]


def test_another_jar_set_means_another_archive(tmp_path: Path) -> None:
    jars = _jars(tmp_path)
    first = archive_path(write_conf(tmp_path, spark={"jars_dir": str(jars)}))
    (jars / "extra-1.0.jar").write_bytes(b"")
    second = archive_path(write_conf(tmp_path, spark={"jars_dir": str(jars)}))
    assert first != second and first.parent == second.parent


def test_recording_asks_the_jvm_for_the_archive_instead_of_using_one(tmp_path: Path) -> None:
    settings = write_conf(tmp_path)
    recording = spark_conf(settings, java_options="-XX:ArchiveClassesAtExit=/x.jsa")
    options = recording["spark.driver.extraJavaOptions"]
    assert "-XX:ArchiveClassesAtExit=/x.jsa" in options and "SharedArchiveFile" not in options


def test_the_test_sessions_driver_maps_the_archive_make_setup_recorded(
    spark: SparkSession, tmp_path: Path
) -> None:
    """`make setup` records the archive; the tests' own driver then starts from it. The JVM
    says which archives it mapped (jcmd VM.info): the driver's archive must be one."""
    settings = write_conf(tmp_path)
    archive = archive_path(settings)
    assert archive.is_file(), f"no archive at {archive}: `make setup` records it (make jvm-archive)"
    options = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions") or ""
    assert f"-XX:SharedArchiveFile={archive}" in options
    jcmd = shutil.which("jcmd")
    assert jcmd is not None, "jcmd (the JDK's) is needed to ask the driver what it mapped"
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
    info = subprocess.run(
        [jcmd, str(pid), "VM.info"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert archive.name in info, "the driver did not map its class-data-sharing archive"
