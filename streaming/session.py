"""The one place a SparkSession is built."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from streaming.config import Settings
from streaming.versions import require_java, spark_jars

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Set by spark-submit in the environment of the Python driver it starts.
SUBMITTED = "PYSPARK_GATEWAY_PORT"


def spark_conf(
    settings: Settings, *, ui: bool | None = None, java_options: str | None = None
) -> dict[str, str]:
    """Spark settings for this profile: Delta, the jars from infra/, sizing for the machine.

    Raises DependencyError when Java or a jar is missing or versions disagree.
    """
    spark = settings.profile.spark
    jars = spark_jars(Path(settings.resolve(spark.jars_dir)))
    cores = os.cpu_count() or 2
    conf = {
        "spark.app.name": spark.app_name,
        "spark.jars": ",".join(str(p) for p in jars.paths),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions or cores),
        "spark.ui.enabled": str(spark.ui_enabled if ui is None else ui).lower(),
        "spark.sql.session.timeZone": "UTC",
        # Delta rebuilds table state with this many tasks (default 50: far too many locally).
        "spark.databricks.delta.snapshotPartitions": str(spark.shuffle_partitions or cores),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        "spark.sql.streaming.stopActiveRunOnRestart": "true",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.sql.warehouse.dir": str(settings.state_dir / "spark-warehouse"),
        # Every stream's batches generate code; Spark keeps 100 compiled classes by default,
        # too few for the pipeline's queries in one driver: the rest are compiled again (and
        # JIT-compiled again) batch after batch. docs/benchmarks.md.
        "spark.sql.codegen.cache.maxEntries": str(CODEGEN_CACHE_ENTRIES),
        # Projections and predicates that whole-stage code generation leaves out (the
        # contracts' checks among them, a profile found) are evaluated instead of having their
        # code generated in every task of every batch, which on the pipeline's small batches
        # cost more than evaluating them. docs/benchmarks.md (bench/profile_writer.py).
        "spark.sql.codegen.factoryMode": "NO_CODEGEN",
        # The pipeline's queries share the driver's cores: each query's jobs run in a pool of
        # its own (streaming/fused.py), so one query's MERGE does not queue the others' jobs
        # behind all of its tasks.
        "spark.scheduler.mode": "FAIR",
    }
    if spark.master:
        conf["spark.master"] = spark.master
    if spark.fork_free_local_fs and jars.local_fs is not None:
        conf.update(local_fs_conf(jars.local_fs))
    # Read when the driver JVM starts: effective for sessions this process launches.
    # `java_options` (recording the class-data-sharing archive) replace the archive's use.
    options = driver_java_options(settings, archive=java_options is None)
    options = " ".join(o for o in (options, java_options) if o)
    if options:
        conf["spark.driver.extraJavaOptions"] = options
    conf.update(spark.extra_conf)
    if spark.fork_free_local_fs and jars.local_fs is not None:
        # A profile's own class path joins headwater's file system jar instead of replacing
        # it (fs.file.impl names a class in it).
        conf.update(local_fs_class_paths(jars.local_fs, spark.extra_conf))
    return conf


CODEGEN_CACHE_ENTRIES = 2000
LOCAL_FS = "io.headwater.fs.NioLocalFileSystem"
LOCAL_FS_CONTEXT = "io.headwater.fs.NioLocalFs"


def local_fs_conf(jar: Path) -> dict[str, str]:
    """Hadoop's file: scheme through headwater's file system (infra/maven/localfs), for the
    FileSystem API (data files) and FileContext (checkpoint and Delta log renames). Without
    Hadoop's native library, the stock one forks `chmod` per file created and `readlink` per
    rename: a fork of the driver's JVM, several per micro-batch of every stream. The jar is on
    the JVMs' class path from their start, as Hadoop resolves file systems before spark.jars
    are loaded."""
    return {
        "spark.driver.extraClassPath": str(jar),
        "spark.executor.extraClassPath": str(jar),
        "spark.hadoop.fs.file.impl": LOCAL_FS,
        "spark.hadoop.fs.AbstractFileSystem.file.impl": LOCAL_FS_CONTEXT,
    }


CLASS_PATH_KEYS = ("spark.driver.extraClassPath", "spark.executor.extraClassPath")


def local_fs_class_paths(jar: Path, extra_conf: dict[str, str]) -> dict[str, str]:
    """The driver's and executors' class paths: headwater's file system jar first, then
    whatever the profile's extra_conf puts there."""
    return {
        key: os.pathsep.join(p for p in (str(jar), extra_conf.get(key, "")) if p)
        for key in CLASS_PATH_KEYS
    }


def driver_java_options(settings: Settings, *, archive: bool = True) -> str:
    """The driver JVM's options from the profile: its log4j2 config, the class-data-sharing
    archive (when `archive` and there is one), then any others."""
    from streaming.jvm_archive import archive_java_options

    spark = settings.profile.spark
    options = []
    if spark.log_config and Path(settings.resolve(spark.log_config)).is_file():
        options.append(f"-Dlog4j2.configurationFile=file:{settings.resolve(spark.log_config)}")
    if archive:
        options.append(archive_java_options(settings))
    if spark.driver_java_options:
        options.append(spark.driver_java_options)
    return " ".join(o for o in options if o)


def build_spark_session(
    settings: Settings, *, ui: bool | None = None, java_options: str | None = None
) -> SparkSession:
    """The SparkSession for `settings`, or the active one with the same settings applied.

    Under spark-submit the master and jars given on the command line win over the profile.
    Raises DependencyError when Java or a jar is missing or versions disagree.
    """
    require_java()
    master = settings.profile.spark.master or ""
    if master.startswith("local"):
        # A local session talks to itself over loopback only (and Spark stops warning
        # that the hostname resolves to a loopback address).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = spark_conf(settings, ui=ui, java_options=java_options)
    if SUBMITTED in os.environ:
        # spark-submit started this process and its --master (always set: local[*] unless
        # given) is the one to use; the builder's would replace it.
        conf.pop("spark.master", None)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
