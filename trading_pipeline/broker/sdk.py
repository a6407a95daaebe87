"""What alpaca-py 0.44 needs before production use, and reading its errors safely.

- It sends every request through `RESTClient._session` (a requests.Session) with **no timeout**: a hung
  server hangs the caller forever. We mount an HTTPAdapter that applies a default timeout to every call.
- Its own retry (3 attempts, fixed 3 s, on 429/504) also re-sends POST /v2/orders — a second order when
  the first one was created but its response was lost. We switch it off (`_retry = 0`, no retry codes)
  and retry in the adapter, resolving ambiguous submits by client_order_id. urllib3's retries are off too.
- `APIError.code` / `.message` parse the body as JSON and raise when it is not JSON or has no `code`
  (the data API's errors have none). `error_details` reads status, message and Retry-After defensively.
- It exposes no response headers. The same transport adapter is where every HTTP request it sends takes a
  token from the rate limiter first and hands the response's X-RateLimit-* headers back to it (`rate_limit.py`):
  `HTTPAdapter.send` is requests' own extension point, and it sees retries and pagination too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from requests.adapters import HTTPAdapter

from trading_pipeline.broker.rate_limit import RateLimiter, current_priority
from trading_pipeline.broker.retry import RETRYABLE_STATUSES, parse_retry_after

_MAX_MESSAGE = 300


class _DefaultTimeoutAdapter(HTTPAdapter):
    """Applies `timeout` to requests sent without one (all of alpaca-py's), never retries itself, and paces
    every request through `limiter` (when given) at the priority the calling broker method spends."""

    def __init__(self, timeout: float, limiter: RateLimiter | None = None) -> None:
        super().__init__(max_retries=0)
        self.timeout = timeout
        self.limiter = limiter

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self.limiter is None:
            return super().send(request, *args, **kwargs)
        self.limiter.acquire(current_priority())  # RateBudgetExhausted: nothing was sent
        headers: Any = {}
        try:
            response = super().send(request, *args, **kwargs)
            headers = response.headers
        finally:
            self.limiter.finish(headers)  # answered or not, this request is no longer in flight
        return response


def harden_client(client: Any, timeout: float, limiter: RateLimiter | None = None) -> None:
    """Give an alpaca-py REST client a request timeout, switch off its built-in retry, and pace it."""
    session = getattr(client, "_session", None)
    if not isinstance(session, requests.Session) or not hasattr(client, "_retry"):
        # Fail at construction, not in production: the SDK's internals moved and the guards above are gone.
        raise RuntimeError(
            f"{type(client).__name__} no longer exposes _session/_retry; re-check the alpaca-py timeout and "
            "retry workarounds in trading_pipeline/broker/sdk.py before upgrading alpaca-py"
        )
    adapter = _DefaultTimeoutAdapter(timeout, limiter)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    client._retry = 0
    client._retry_codes = []


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, classified. `ambiguous`: the request may have been processed (order submits
    must then look the order up before sending it again)."""

    status: int | None
    message: str
    retryable: bool
    ambiguous: bool
    retry_after: float | None = None
    code: int | None = None  # Alpaca's error code from the body (40310000, 40310100, 42210000, ...)
    details: dict[str, str] = field(default_factory=dict)  # the body's other scalar fields, as text


def error_details(exc: BaseException) -> Failure | None:
    """Classify an exception from an alpaca-py call; None when it is not a transport or API failure."""
    if isinstance(exc, APIError):
        status = _status_of(exc)
        retry_after = None
        response = getattr(exc, "response", None)
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        retryable = status is None or status in RETRYABLE_STATUSES
        body = _body_of(exc)
        code = body.get("code")
        return Failure(
            status=status,
            message=_message_of(exc, status),
            retryable=retryable,
            # A 429 is refused before processing; a 5xx (a 504 from a gateway above all) may not be.
            ambiguous=status is None or status >= 500,
            retry_after=retry_after,
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            details={
                key: str(value)
                for key, value in body.items()
                if key not in ("code", "message") and isinstance(value, str | int | float) and len(str(value)) < 64
            },
        )
    if isinstance(exc, requests.exceptions.Timeout | requests.exceptions.ConnectionError):
        return Failure(None, f"{type(exc).__name__}: {_short(str(exc))}", retryable=True, ambiguous=True)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return Failure(None, f"{type(exc).__name__}: {_short(str(exc))}", retryable=True, ambiguous=True)
    return None


def _status_of(exc: APIError) -> int | None:
    try:
        status = exc.status_code
    except Exception:
        return None
    return int(status) if isinstance(status, int) else None


def _body_of(exc: APIError) -> dict:
    """Alpaca's JSON error body (`{"code": ..., "message": ..., ...}`), or {} when it is not one."""
    try:
        body = json.loads(str(exc) or "")
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _message_of(exc: APIError, status: int | None) -> str:
    text = str(exc) or ""
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return _short(body["message"])
    if text.strip():
        return _short(text.strip())
    return f"HTTP {status}" if status is not None else "no response body"


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
