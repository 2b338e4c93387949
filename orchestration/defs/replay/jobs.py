"""Replaying a Kafka topic into bronze on demand: a job launched from the UI with run config.

Records bronze already holds are not written again (streaming.replay), so a replay can be run
while the bronze stream runs, and run twice, without doubling anything.
"""

import dagster as dg
from pydantic import Field

from orchestration.defs.resources import HeadwaterResource
from streaming.bronze import LAYER
from streaming.config import Settings
from streaming.replay import check_start, parse_offsets, parse_timestamp, replay_topic

JOB = "headwater_replay"


class ReplayConfig(dg.Config):  # type: ignore[misc]
    """Which topic to replay, and from where: a timestamp or offsets per partition."""

    topic: str = Field(description="source topic (or its table name) as in conf/pipeline.yaml")
    from_timestamp: str | None = Field(
        default=None,
        description="ISO-8601 date-time: per partition, replay from the first record at or after it",
    )
    from_offsets: dict[str, int] | None = Field(
        default=None,
        description='offsets per partition, e.g. {"0": 10, "1": 0}; partitions not named are '
        "not replayed",
    )


def replay_job(settings: Settings) -> dg.JobDefinition:
    """The job `headwater_replay`: one op that replays the configured topic into bronze."""
    topics = ", ".join(s.topic for s in settings.pipeline.sources)

    @dg.op(name="replay_topic")
    def _replay(
        context: dg.OpExecutionContext, config: ReplayConfig, headwater: HeadwaterResource
    ) -> None:
        """Re-read a topic into its bronze table; records bronze holds are not written again."""
        start = parse_timestamp(config.from_timestamp) if config.from_timestamp else None
        offsets = parse_offsets(config.from_offsets) if config.from_offsets is not None else None
        check_start(start, offsets)
        current = headwater.settings()
        source = current.pipeline.source(config.topic)
        report = replay_topic(
            headwater.spark(),
            current,
            source.topic,
            from_timestamp=start,
            from_offsets=offsets,
            owner=f"dagster run {context.run_id}",
        )
        context.log.info(report.summary())
        context.log_event(
            dg.AssetMaterialization(
                asset_key=dg.AssetKey([LAYER, source.table_name]),
                description=f"replay of Kafka topic {source.topic}",
                metadata={
                    "records_read": dg.MetadataValue.int(report.records_read),
                    "inserted": dg.MetadataValue.int(report.inserted),
                    "already_present": dg.MetadataValue.int(report.already_present),
                    "delta_version": dg.MetadataValue.int(report.delta_version),
                    "offsets_read": dg.MetadataValue.json(
                        {str(p): list(r) for p, r in report.ranges.items()}
                    ),
                    "path": dg.MetadataValue.path(current.table_path(LAYER, source.table_name)),
                },
            )
        )

    @dg.job(
        name=JOB,
        description=f"Replay a Kafka topic ({topics}) into bronze from a timestamp or offsets; "
        "records bronze holds are not written again.",
    )
    def _job() -> None:
        _replay()

    return _job
