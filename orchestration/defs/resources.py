"""The resource through which Dagster reaches headwater's conf and Spark."""

from __future__ import annotations

import dagster as dg
from pydantic import Field
from pyspark.sql import SparkSession

from streaming.config import Settings, load_settings
from streaming.session import build_spark_session


class HeadwaterResource(dg.ConfigurableResource):  # type: ignore[misc,type-arg]
    """headwater's conf (one model of the pipeline) and a SparkSession built from it."""

    conf_dir: str | None = Field(
        default=None, description="conf directory; default $HEADWATER_CONF or ./conf"
    )
    profile: str | None = Field(
        default=None, description="profile in conf/profiles; default $HEADWATER_PROFILE or local"
    )

    def settings(self) -> Settings:
        return load_settings(self.conf_dir, self.profile)

    def spark(self) -> SparkSession:
        return build_spark_session(self.settings())
