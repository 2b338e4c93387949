"""The Spark driver's class-data-sharing archive (JVM AppCDS).

A Spark driver loads about twenty thousand classes (Spark SQL, Delta, the Kafka connector)
from jars at every start: read, parsed and verified each time, which is most of a cold start
on two cores. `headwater jvm-archive` (run by `make setup`) starts a driver once with
`-XX:ArchiveClassesAtExit`, runs the pipeline's own code over a few demo records on a
throw-away lake, and keeps the archive the JVM writes at exit (devstack/jvm_archive.py
records it; this module finds it). Every later driver (the demo,
`headwater stream`, spark-submit jobs, Dagster runs, tests) maps those classes from it.

The archive's name carries what it was made from (the Java executable, pyspark's version,
the jar folder and its jars), so a changed environment finds no archive and starts as
before; the JVM also refuses an archive from another build of itself, quietly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from streaming.config import Settings

ARCHIVE_DIR = ".cds"
# The JVM reports why it cannot use or write an archive on stdout: not the user's concern.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_path(settings: Settings) -> Path:
    """Where the driver's archive for this Java, pyspark and jar folder lives."""
    from importlib import metadata

    jars_dir = Path(settings.resolve(settings.profile.spark.jars_dir)).resolve()
    java = shutil.which("java") or "java"
    identity = "|".join(
        [
            os.path.realpath(java),
            metadata.version("pyspark"),
            str(jars_dir),
            *sorted(p.name for p in jars_dir.glob("*.jar")),
        ]
    )
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return jars_dir / ARCHIVE_DIR / f"driver-{key}.jsa"


def archive_java_options(settings: Settings) -> str:
    """The driver's JVM options that use the archive, or "" when it is off or not built."""
    if not settings.profile.spark.class_data_sharing:
        return ""
    path = archive_path(settings)
    return f"-XX:SharedArchiveFile={path} {QUIET}" if path.is_file() else ""
