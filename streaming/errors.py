"""The one exception type that reaches a user: a single sentence saying what to do."""

from __future__ import annotations


class HeadwaterError(Exception):
    """A problem the user can fix: bad config, a missing dependency, a port in use.

    The message is one sentence that names the thing and says what to do; the CLI prints it
    without a traceback and exits with status 2.
    """


class ConfigError(HeadwaterError):
    """A config file is missing, unreadable or invalid."""


class DependencyError(HeadwaterError):
    """Java, Maven, a jar or a Python package is missing or at the wrong version."""


class ServiceError(HeadwaterError):
    """A local service (the Kafka broker) could not start, answer or stop."""
