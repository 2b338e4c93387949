"""Materialize on a streamed table while another process runs its stream: the run's first
word says so and what to do instead, and the run records the table's state; no stack trace."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs.resources import HeadwaterResource
from orchestration.defs.silver.assets import silver_assets
from streaming.config import Settings
from streaming.locks import stream_locks

pytestmark = pytest.mark.integration


def test_materialize_while_the_stream_runs_elsewhere_says_so_and_records_the_state(
    pipeline: Settings, tmp_path: Path
) -> None:
    orders = pipeline.pipeline.sources[0]
    [silver] = [a for a in silver_assets(pipeline) if a.op.name == f"silver_{orders.table_name}"]
    resources = {"headwater": HeadwaterResource(conf_dir=str(pipeline.conf_dir), profile="local")}
    today = datetime.now(UTC).date().isoformat()
    streams = [f"silver:{orders.topic}"]
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        stream_locks(pipeline, streams, "headwater run"),
    ):
        for asset in (silver,):
            result = dg.materialize(
                [asset],
                resources=resources,
                partition_key=today,
                instance=instance,
                raise_on_error=False,
            )
            assert result.success, asset.op.name
            said = [
                e.user_message for e in instance.all_logs(result.run_id) if not e.is_dagster_event
            ]
            first = next(m for m in said if m)
            assert "is run by headwater run" in first and "nothing to catch up" in first
            assert "backfill" in first  # what to do instead
            done = result.get_asset_materialization_events()
            assert done and all(e.materialization.metadata["mode"].value == "held" for e in done)
