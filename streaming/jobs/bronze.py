"""spark-submit entry point of the Kafka -> bronze streams.

    spark-submit --jars 'infra/jars/spark/*' streaming/jobs/bronze.py [--available-now] [--topic T]

Runs until stopped (Ctrl-C / SIGTERM), or with --available-now until caught up.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from streaming.jobs.common import job_arguments, run_job


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_arguments("Stream Kafka topics into Delta bronze tables.")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        help="a source topic or table name from conf/pipeline.yaml (repeatable; default: all)",
    )
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="catch up with what Kafka holds now, then stop (default: run continuously)",
    )
    args = parser.parse_args(argv)
    return run_job(args, topics=args.topic, available_now=args.available_now)


if __name__ == "__main__":
    sys.exit(main())
