"""spark-submit entry point: Run every layer of every source in one Spark application.

    spark-submit --jars 'infra/jars/spark/*' streaming/jobs/pipeline.py [--available-now] [--topic T]

Runs until stopped (Ctrl-C / SIGTERM), or with --available-now until caught up.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from streaming.jobs.common import run_job, stream_arguments
from streaming.runner import LAYERS


def main(argv: Sequence[str] | None = None) -> int:
    args = stream_arguments("Run every layer of every source in one Spark application.").parse_args(
        argv
    )
    return run_job(args, layers=list(LAYERS), topics=args.topic, available_now=args.available_now)


if __name__ == "__main__":
    sys.exit(main())
