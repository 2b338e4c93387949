"""Alerts a team notices: a log line always, and a JSON POST to a webhook when conf names one.

The webhook's URL is a secret, so conf names the environment variable that holds it
(orchestration.alerting.webhook_url_env). Sending never raises: an alert that cannot be
delivered is logged as such, and the caller carries on.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from streaming.config import Settings

log = logging.getLogger("headwater.alerts")

TIMEOUT_S = 5.0


def alert(
    settings: Settings,
    summary: str,
    details: Mapping[str, Any] | None = None,
    *,
    logger: logging.Logger | Any | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Raise an alert: log `summary` (and `details`) as an error and POST it to the webhook.

    `logger` may be a Dagster context's log. Returns True when a webhook received it.
    """
    env = os.environ if environ is None else environ
    payload = {
        "source": "headwater",
        "summary": summary,
        "details": dict(details or {}),
        "at": datetime.now(UTC).isoformat(),
    }
    (logger or log).error(
        f"HEADWATER ALERT: {summary} {json.dumps(payload['details'], default=str)}"
    )
    variable = settings.pipeline.orchestration.alerting.webhook_url_env
    url = env.get(variable) if variable else None
    if not url:
        return False
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return bool(200 <= int(response.status) < 300)
    except (urllib.error.URLError, OSError) as exc:
        log.error("the alert could not be sent to the webhook in $%s: %s", variable, exc)
        return False
