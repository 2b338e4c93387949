"""Start-up checks that the JVM side and the Python side agree.

pyproject.toml pins pyspark and delta-spark; infra/pom.xml pins the jars Maven resolves into
infra/jars/. Both must name the same Spark and Delta versions. These checks read what is really
installed and really on disk, and fail with one sentence saying what to run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from streaming.errors import DependencyError

SCALA_BINARY = "2.13"
_DELTA_JAR = re.compile(
    rf"^delta-spark_(?P<line>\d+\.\d+)_{SCALA_BINARY}-(?P<version>[\w.-]+)\.jar$"
)
_KAFKA_CONNECTOR_JAR = re.compile(
    rf"^spark-sql-kafka-0-10_{SCALA_BINARY}-(?P<version>[\w.-]+)\.jar$"
)
_BROKER_JAR = re.compile(rf"^kafka_{SCALA_BINARY}-(?P<version>[\w.-]+)\.jar$")
JARS_HINT = "run `make jars` (Maven resolves infra/pom.xml into infra/jars/)"


@dataclass(frozen=True)
class SparkJars:
    """The jars Spark is given through spark.jars, and the versions they carry."""

    paths: tuple[Path, ...]
    delta_version: str
    delta_spark_line: str
    kafka_connector_version: str
    local_fs: Path | None = None  # headwater-localfs-*.jar (infra/maven/localfs), when built


LOCAL_FS_JAR = "headwater-localfs-"


def installed_version(distribution: str) -> str:
    """Version of an installed Python distribution; DependencyError when it is missing."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise DependencyError(
            f"Python package {distribution} is not installed: run `make setup` "
            "(or `pip install -e .` in the project's virtualenv)"
        ) from None


def require_java() -> str:
    """Path of the `java` executable; DependencyError when there is none."""
    java = shutil.which("java")
    if java is None:
        raise DependencyError(
            "Java was not found on PATH: install a JDK 17 (e.g. `apt-get install "
            "openjdk-17-jdk-headless`) or put its bin/ on PATH"
        )
    return java


def java_major_version(java: str) -> int:
    """The major version of a `java` executable (17 for 17.0.15)."""
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=30, check=False
    ).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        raise DependencyError(f"could not read the version of {java}: it printed {out!r}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def spark_jars(jars_dir: Path) -> SparkJars:
    """The Delta and Kafka connector jars in `jars_dir`, checked against the installed pyspark
    and delta-spark.

    Raises DependencyError when the folder or a jar is missing or a version disagrees.
    """
    if not jars_dir.is_dir() or not any(jars_dir.glob("*.jar")):
        raise DependencyError(f"Spark's jar folder {jars_dir} is missing or empty: {JARS_HINT}")
    names = {p.name: p for p in jars_dir.glob("*.jar")}
    delta = _single(
        names, _DELTA_JAR, f"the Delta Lake jar (delta-spark_*_{SCALA_BINARY})", jars_dir
    )
    connector = _single(
        names,
        _KAFKA_CONNECTOR_JAR,
        f"the Spark Kafka connector jar (spark-sql-kafka-0-10_{SCALA_BINARY})",
        jars_dir,
    )
    jars = SparkJars(
        paths=tuple(sorted(names.values())),
        delta_version=delta.group("version"),
        delta_spark_line=delta.group("line"),
        kafka_connector_version=connector.group("version"),
        local_fs=next((p for n, p in sorted(names.items()) if n.startswith(LOCAL_FS_JAR)), None),
    )
    check_agreement(jars, installed_version("pyspark"), installed_version("delta-spark"))
    return jars


def check_agreement(jars: SparkJars, pyspark_version: str, delta_python_version: str) -> None:
    """Fail unless pyspark, delta-spark and the jars name the same Spark and Delta versions."""
    spark_line = ".".join(pyspark_version.split(".")[:2])
    hint = "make pyproject.toml's pins and infra/pom.xml's properties agree, then run `make setup`"
    if jars.kafka_connector_version != pyspark_version:
        raise DependencyError(
            f"pyspark {pyspark_version} is installed but the Spark Kafka connector jar is "
            f"{jars.kafka_connector_version}: {hint}"
        )
    if jars.delta_spark_line != spark_line:
        raise DependencyError(
            f"the Delta jar is built for Spark {jars.delta_spark_line} but pyspark "
            f"{pyspark_version} is installed: {hint}"
        )
    if jars.delta_version != delta_python_version:
        raise DependencyError(
            f"delta-spark {delta_python_version} is installed but the Delta jar is "
            f"{jars.delta_version}: {hint}"
        )


def broker_classpath(jars_dir: Path) -> str:
    """The `java -cp` classpath of the Kafka broker; DependencyError when its jars are missing."""
    if not jars_dir.is_dir() or not any(_BROKER_JAR.match(p.name) for p in jars_dir.glob("*.jar")):
        raise DependencyError(f"the Kafka broker jars are missing from {jars_dir}: {JARS_HINT}")
    return f"{jars_dir}/*"


def _single(
    names: dict[str, Path], pattern: re.Pattern[str], what: str, where: Path
) -> re.Match[str]:
    found = [m for m in (pattern.match(n) for n in names) if m]
    if not found:
        raise DependencyError(f"{what} is missing from {where}: {JARS_HINT}")
    if len(found) > 1:
        listed = ", ".join(sorted(m.string for m in found))
        raise DependencyError(
            f"{where} holds several versions of {what} ({listed}): delete the folder and {JARS_HINT}"
        )
    return found[0]
