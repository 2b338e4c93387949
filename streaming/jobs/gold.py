"""spark-submit entry point: Keep the gold tables of conf/gold/ equal to their definitions.

    spark-submit --jars 'infra/jars/spark/*' streaming/jobs/gold.py [--available-now] [--topic T]

Runs until stopped (Ctrl-C / SIGTERM), or with --available-now until caught up.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from streaming.jobs.common import run_job, stream_arguments


def main(argv: Sequence[str] | None = None) -> int:
    args = stream_arguments(
        "Keep the gold tables of conf/gold/ equal to their definitions."
    ).parse_args(argv)
    return run_job(args, layers=["gold"], topics=args.topic, available_now=args.available_now)


if __name__ == "__main__":
    sys.exit(main())
