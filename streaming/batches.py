"""Running a foreachBatch function so that its errors reach Spark in a form Spark handles.

Spark decides whether a failed foreachBatch call was only its query being stopped by matching
the Python error text against a backtracking regex; a long Py4J error (a full Java stack trace)
overflows the stack of the stream thread (java.lang.StackOverflowError) instead of stopping
cleanly. So a batch function's errors are re-raised short: an interruption in the words Spark
looks for, anything else as one line (the full error goes to the log first).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame
from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger(__name__)

BatchFunction = Callable[[DataFrame, int], None]
_INTERRUPTIONS = (
    "java.lang.InterruptedException",
    "java.io.InterruptedIOException",
    "java.nio.channels.ClosedByInterruptException",
)


class BatchFailed(RuntimeError):
    """A micro-batch function failed; the message is one line, the details are in the log."""


def safe_batches(name: str, write: BatchFunction) -> BatchFunction:
    """`write`, with its Py4J errors re-raised short (see the module docstring)."""

    @functools.wraps(write)
    def run(batch: DataFrame, batch_id: int) -> None:
        try:
            write(batch, batch_id)
        except Py4JJavaError as exc:
            text = str(exc.java_exception)
            stopped = next((i for i in _INTERRUPTIONS if i in text), None)
            if stopped is None and "SPARK_JOB_CANCELLED" in text:
                stopped = _INTERRUPTIONS[0]  # its query was stopped while a job of it ran
            if stopped is not None:
                # The words StreamExecution.isInterruptionException looks for, and no more.
                raise BatchFailed(
                    f"py4j.protocol.Py4JJavaError: An error occurred while calling {name}: "
                    f"{stopped} (batch {batch_id} was stopped)"
                ) from None
            log.error("batch %d of %s failed: %s", batch_id, name, exc)
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            raise BatchFailed(f"batch {batch_id} of {name} failed: {first[:500]}") from None

    return run


def start_foreach_batch(
    changes: DataFrame,
    name: str,
    write: BatchFunction,
    checkpoint: str,
    *,
    trigger_interval: str,
    available_now: bool,
) -> StreamingQuery:
    """Start query `name`: `write` (made safe, see above) for every micro-batch of `changes`,
    on a processing-time trigger or availableNow."""
    writer = (
        changes.writeStream.queryName(name)
        .foreachBatch(safe_batches(name, write))
        .option("checkpointLocation", checkpoint)
    )
    if available_now:
        return writer.trigger(availableNow=True).start()
    return writer.trigger(processingTime=trigger_interval).start()
