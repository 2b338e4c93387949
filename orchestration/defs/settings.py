"""conf, read once per load of the code location: orchestration/definitions.py reads it and
every folder of defs/ builds its definitions from those Settings (ops read the same conf
through the `headwater` resource)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from streaming.config import Settings, load_settings

_LOADING: ContextVar[Settings | None] = ContextVar("headwater_settings", default=None)


@contextmanager
def loading(settings: Settings) -> Iterator[Settings]:
    """While the code location loads: the Settings every folder builds from."""
    token = _LOADING.set(settings)
    try:
        yield settings
    finally:
        _LOADING.reset(token)


def settings_of_this_load() -> Settings:
    """The Settings of the load going on; outside one (a folder loaded on its own, e.g. by a
    test), conf from $HEADWATER_CONF / $HEADWATER_PROFILE."""
    return _LOADING.get() or load_settings()
