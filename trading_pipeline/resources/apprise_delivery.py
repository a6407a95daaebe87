"""One alert to one Apprise URL (Telegram, Discord, e-mail, ntfy, PagerDuty, Pushover, Teams, …), through the
Apprise library: one well-kept client for every service instead of one hand-written client each.

Each URL is sent on its own so that its outcome is its own: "ok", or "failed: <Apprise's last warning, with
every secret redacted>". Nothing is raised — the sensor or command that noticed the incident keeps running.
"""

from __future__ import annotations

from typing import Any

from trading_pipeline.resources.alert_channels import REDACTOR, apprise_scheme, register_secret_url

# Apprise's notification types: the colour or icon a service shows.
_NOTIFY_TYPE = {"info": "info", "warning": "warning", "error": "failure", "critical": "failure", "resolved": "success"}
SEND_TIMEOUT_SECONDS = 15.0


def incident_title_and_body(payload: dict[str, Any]) -> tuple[str, str]:
    """The incident as the webhook's JSON carries it, in words: what (title), the message (since when, the
    last error, what to do), and which incident it is, so a recovery can be matched to its alert."""
    title = f"[{payload['severity'].upper()}] {payload['title']}"
    body = (
        f"{payload['message']}\n\n"
        f"incident {payload['key']} · {payload['state']} · from {payload['source']} · {payload['at']}"
        + (f" · seen {payload['occurrences']}×" if payload.get("occurrences", 1) > 1 else "")
    )
    return title, body


def send_apprise(url: str, payload: dict[str, Any], *, timeout: float = SEND_TIMEOUT_SECONDS) -> str:
    register_secret_url(url)  # before Apprise sees it: it logs URLs it loads or cannot parse
    try:
        import apprise
    except ImportError:
        return "failed: the apprise library is not installed (pip install 'apprise>=1.9,<3')"
    try:
        service = apprise.Apprise.instantiate(url)
        if service is None:
            return (
                f"failed: not a URL Apprise understands (scheme '{apprise_scheme(url)}'); see "
                "https://github.com/caronc/apprise/wiki for that service's URL format"
            )
        sender = apprise.Apprise()
        sender.add(service)
        title, body = incident_title_and_body(payload)
        kind = "resolved" if payload.get("state") == "resolved" else payload["severity"]
        result = sender.notify(title=title, body=body, notify_type=_NOTIFY_TYPE.get(kind, "info"), timeout=timeout)
    except Exception as exc:  # a bug or surprise in one service's plugin must not stop the sensor
        return f"failed: {type(exc).__name__}"  # not str(exc): it may contain the URL, a secret
    if bool(result):
        return "ok"
    return f"failed: {_last_warning(result)}"


def _last_warning(result: Any) -> str:
    """Apprise's own words for why the service refused (its last WARNING or ERROR of this call), redacted."""
    try:
        entries = list(result.logs()) if callable(getattr(result, "logs", None)) else []
    except Exception:
        entries = []
    words = [e.message for e in entries if str(getattr(e, "level", "")).upper() in ("WARNING", "ERROR")]
    if not words:
        return "the service did not accept it (Apprise gave no reason)"
    return REDACTOR.redact(str(words[-1])).strip()[:300]
