"""The pins that must agree do agree, and a missing or mismatched piece says what to run."""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from streaming.errors import DependencyError
from streaming.versions import (
    SparkJars,
    broker_classpath,
    check_agreement,
    installed_version,
    require_java,
    spark_jars,
)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _pom_properties() -> dict[str, str]:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(REPO / "infra/pom.xml").getroot().find("m:properties", ns)
    assert props is not None
    return {child.tag.split("}")[1]: (child.text or "") for child in props}


def _pyproject_pin(name: str) -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        found = re.match(rf"^{re.escape(name)}(?:\[[\w,-]+\])?==([\w.]+)", dep)  # extras allowed
        if found:
            return found.group(1)
    raise AssertionError(f"{name} is not pinned exactly in pyproject.toml")


def test_pom_and_pyproject_pin_the_same_spark_and_delta() -> None:
    props = _pom_properties()
    assert props["spark.version"] == _pyproject_pin("pyspark")
    assert props["delta.version"] == _pyproject_pin("delta-spark")
    assert props["delta.spark.line"] == ".".join(props["spark.version"].split(".")[:2])


def test_installed_packages_and_resolved_jars_agree() -> None:
    jars = spark_jars(REPO / "infra/jars/spark")
    assert jars.kafka_connector_version == installed_version("pyspark")
    assert jars.delta_version == installed_version("delta-spark")
    assert broker_classpath(REPO / "infra/jars/kafka").endswith("/*")


def _jars(connector: str = "4.2.0", line: str = "4.2", delta: str = "4.4.0") -> SparkJars:
    return SparkJars(
        paths=(), delta_version=delta, delta_spark_line=line, kafka_connector_version=connector
    )


def test_connector_version_mismatch_is_explained() -> None:
    with pytest.raises(
        DependencyError,
        match=r"pyspark 4.3.0 is installed but the Spark Kafka connector jar is 4.2.0",
    ):
        check_agreement(_jars(), "4.3.0", "4.4.0")


def test_delta_built_for_another_spark_is_explained() -> None:
    with pytest.raises(
        DependencyError, match=r"Delta jar is built for Spark 4.1 but pyspark 4.2.0"
    ):
        check_agreement(_jars(line="4.1"), "4.2.0", "4.4.0")


def test_delta_python_and_jar_mismatch_is_explained() -> None:
    with pytest.raises(
        DependencyError, match=r"delta-spark 4.4.1 is installed but the Delta jar is 4.4.0"
    ):
        check_agreement(_jars(), "4.2.0", "4.4.1")


def test_missing_jar_folder_says_run_make_jars(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match=r"missing or empty: run `make jars`"):
        spark_jars(tmp_path / "nowhere")


def test_missing_delta_jar_says_run_make_jars(tmp_path: Path) -> None:
    (tmp_path / "spark-sql-kafka-0-10_2.13-4.2.0.jar").write_bytes(b"")
    with pytest.raises(
        DependencyError, match=r"Delta Lake jar .* is missing from .*: run `make jars`"
    ):
        spark_jars(tmp_path)


def test_missing_broker_jars_say_run_make_jars(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match=r"Kafka broker jars are missing .*: run `make jars`"):
        broker_classpath(tmp_path)


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DependencyError, match=r"Java was not found on PATH: install a JDK 17"):
        require_java()
