"""The continuous run mode: a job that runs the whole pipeline as a Pipes process, and the
sensor that supervises it (restarts it after a death, replaces it when stuck)."""

from orchestration.defs.streams.continuous import CONTINUOUS_JOB, continuous_job
from orchestration.defs.streams.supervisor import supervisor_sensor

__all__ = ["CONTINUOUS_JOB", "continuous_job", "supervisor_sensor"]
