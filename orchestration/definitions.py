"""The Dagster code location (`dagster dev`, `dg list defs` from the repository root): every
folder of orchestration/defs/ contributes its own definitions (its `definitions.py`), all
built from conf read once per load, and the `headwater` resource through which ops reach the
same conf and Spark."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from orchestration.defs.resources import HeadwaterResource
from orchestration.defs.settings import loading
from streaming.config import load_settings
from streaming.errors import HeadwaterError


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, not at import: conf is read then."""
    resource = HeadwaterResource()
    with loading(load_settings(resource.conf_dir, resource.profile)):
        try:
            folders = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
        except Exception as exc:
            # A folder that meets bad conf raises headwater's error, which the loader wraps
            # in a tree of every folder: the user reads the sentence that says what to fix.
            found = _headwater_error(exc)
            if found is None:
                raise
            raise found from None
    return dg.Definitions.merge(folders, dg.Definitions(resources={"headwater": resource}))


def _headwater_error(exc: BaseException) -> HeadwaterError | None:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, HeadwaterError):
        cause = cause.__cause__ or cause.__context__
    return cause
