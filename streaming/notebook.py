"""A notebook's way into the lake: one call gives a Spark session on the configured lake, and
the lake's tables by the names the catalog gives them ('layer.table').

    from streaming.notebook import open_lake

    lake = open_lake()                       # conf and profile chosen as load_settings does
    lake.table("gold.customer_orders").show()
    lake.history("silver.customers").show()  # Delta's DESCRIBE HISTORY
    lake.stop()

Nothing here holds logic of its own: settings come from `load_settings`, the session from
`build_spark_session`, tables from `read_table` and the list of tables from the catalog.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from streaming.catalog import Table, pipeline_tables
from streaming.config import DEFAULT_PROFILE, Settings, default_conf_dir, load_settings
from streaming.delta_log import DeltaLogError, latest_version, live_rows
from streaming.errors import HeadwaterError
from streaming.progress import LAYER as OPS
from streaming.progress import TABLE as PROGRESS
from streaming.session import build_spark_session
from streaming.tables import has_delta_log, read_table

STREAM_PROGRESS = f"{OPS}.{PROGRESS}"


class LakeError(HeadwaterError):
    """A table was asked for that the lake does not hold (yet)."""


@dataclass(frozen=True)
class Lake:
    """The configured lake and a Spark session on it."""

    spark: SparkSession
    settings: Settings

    def tables(self, layer: str | None = None) -> list[Table]:
        """The pipeline's tables from the catalog (those of `layer` only, when given), in the
        order the data flows. ops.stream_progress is not among them: it records the streams."""
        return [t for t in pipeline_tables(self.settings) if layer is None or t.layer == layer]

    def catalog(self) -> Any:
        """A pandas DataFrame of every table of the catalog and ops.stream_progress: its name,
        description, upstream tables, path, and its Delta version and rows as its log says
        (None when the table does not exist yet or is not on local disk)."""
        import pandas as pd

        entries = [
            (t.qualified, t.description, ", ".join(t.upstream), t.path) for t in self.tables()
        ]
        entries.append(
            (
                STREAM_PROGRESS,
                "Progress of every micro-batch of every stream.",
                "",
                self.path(STREAM_PROGRESS),
            )
        )
        rows = [(*entry, *_version_and_rows(entry[3])) for entry in entries]
        columns = ["table", "description", "upstream", "path", "version", "rows"]
        return pd.DataFrame(rows, columns=columns)

    def path(self, name: str) -> str:
        """Where table `name` ('layer.table') lives. Raises ConfigError for a malformed name."""
        return self.settings.table_path_by_name(name)

    def table(self, name: str) -> DataFrame:
        """Table `name` ('layer.table', e.g. 'silver.orders') as of its latest commit.

        Raises LakeError when there is no Delta table by that name in the lake.
        """
        frame = read_table(self.spark, self.settings, name)
        if frame is None:
            raise LakeError(self._missing(name))
        return frame

    def history(self, name: str, limit: int | None = None) -> DataFrame:
        """The Delta history of table `name` (as DESCRIBE HISTORY gives it), newest commit
        first; the latest `limit` commits only, when given. Raises LakeError as `table` does."""
        from delta.tables import DeltaTable

        path = self.path(name)
        if not has_delta_log(self.spark, path):
            raise LakeError(self._missing(name))
        delta = DeltaTable.forPath(self.spark, path)
        return delta.history(limit) if limit is not None else delta.history()

    def command(self, *args: str) -> str:
        """The `headwater` command line that runs `args` on this lake's conf and profile, quoted
        for a shell (--conf and --profile left out where the defaults find the same)."""
        line = ["headwater"]
        if self.settings.conf_dir != default_conf_dir({}):
            line += ["--conf", str(self.settings.conf_dir)]
        if self.settings.profile_name != DEFAULT_PROFILE:
            line += ["--profile", self.settings.profile_name]
        return shlex.join([*line, *args])

    def stop(self) -> None:
        """Stop the Spark session; the driver's JVM exits with this Python process (the kernel)."""
        self.spark.stop()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _missing(self, name: str) -> str:
        known = [t.qualified for t in self.tables()] + [STREAM_PROGRESS]
        if name in known:
            return (
                f"{name} does not exist yet at {self.path(name)}: run the pipeline first "
                "(make demo, or headwater run --available-now)"
            )
        return f"no table {name} in the lake: choose one of {', '.join(known)}"


def open_lake(
    conf_dir: Path | str | None = None, profile: str | None = None, *, ui: bool | None = None
) -> Lake:
    """The lake of conf (`conf_dir`, else $HEADWATER_CONF, else ./conf, else the checkout's
    conf/) and profile (`profile`, else $HEADWATER_PROFILE, else 'local'), with a Spark session
    built as every headwater job builds it (`ui` overrides the profile's Spark UI setting).

    Raises ConfigError for bad conf and DependencyError when Java or a jar is missing.
    """
    settings = load_settings(conf_dir, profile)
    return Lake(build_spark_session(settings, ui=ui), settings)


def _version_and_rows(path: str) -> tuple[int | None, int | None]:
    try:
        return latest_version(path), live_rows(path)
    except DeltaLogError:
        return None, None
