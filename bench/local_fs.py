"""What a file costs the Spark driver: Hadoop's stock local file system against headwater's
(infra/maven/localfs: java.nio where Hadoop without its native library forks `chmod` for
every file created and `readlink` for every rename through FileContext).

One driver, both file systems side by side: N creates through the FileSystem API (each a data
file and its .crc, as Spark and Delta write them) and N renames through FileContext (how
streaming checkpoints and Delta's log commit), each timed on the JVM's side of the call.

    .venv/bin/python bench/local_fs.py [--files 200] [--conf conf] [--profile local]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

from streaming.config import load_settings
from streaming.session import build_spark_session

STOCK = {
    "fs.file.impl": "org.apache.hadoop.fs.LocalFileSystem",
    "fs.AbstractFileSystem.file.impl": "org.apache.hadoop.fs.local.LocalFs",
}


def measure(spark: Any, overrides: dict[str, str], files: int) -> dict[str, Any]:
    jvm = spark._jvm
    conf = jvm.org.apache.hadoop.conf.Configuration(spark._jsc.hadoopConfiguration())
    conf.set("fs.file.impl.disable.cache", "true")
    for key, value in overrides.items():
        conf.set(key, value)
    root = tempfile.mkdtemp(prefix="headwater-localfs-")
    path = jvm.org.apache.hadoop.fs.Path
    fs = path(f"file://{root}").getFileSystem(conf)
    context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(conf)
    overwrite = spark.sparkContext._gateway.new_array(jvm.org.apache.hadoop.fs.Options.Rename, 1)
    overwrite[0] = jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
    started = time.monotonic()
    for i in range(files):
        out = fs.create(path(f"file://{root}/f{i}"), True)
        out.write(b"x")
        out.close()
    created = time.monotonic()
    for i in range(files):
        context.rename(path(f"file://{root}/f{i}"), path(f"file://{root}/g{i}"), overwrite)
    renamed = time.monotonic()
    return {
        "file_system": str(fs.getClass().getName()),
        "create_ms": round((created - started) * 1000 / files, 2),
        "rename_ms": round((renamed - created) * 1000 / files, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--conf", default="conf")
    parser.add_argument("--profile", default="local")
    args = parser.parse_args()
    spark = build_spark_session(load_settings(args.conf, args.profile), ui=False)
    measure(spark, {}, 20)  # warm both paths up
    measure(spark, STOCK, 20)
    results = {
        "stock": measure(spark, STOCK, args.files),
        "headwater": measure(spark, {}, args.files),
    }
    print(json.dumps(results, indent=2))
    for side, figures in results.items():
        print(
            f"{side:>9} ({figures['file_system']}): create {figures['create_ms']} ms, "
            f"FileContext rename {figures['rename_ms']} ms per file"
        )


if __name__ == "__main__":
    main()
