"""Alpaca's errors as the simulator answers them: the error codes of the trading API and `SimApiError`.

The trading API's error bodies are {"code": <8 digits>, "message": ...}; the market-data API's carry no code
(alpaca-py's `APIError.code` raises on them), so `data_error` leaves it out.
"""

from __future__ import annotations

from typing import Any

# Alpaca error codes as they appear in response bodies.
CODE_INVALID_REQUEST = 40010001
CODE_MALFORMED_BODY = 40010000
CODE_UNAUTHORIZED = 40110000
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000
CODE_RATE_LIMITED = 42910000
CODE_INTERNAL = 50010000


class SimApiError(Exception):
    """An error the simulator answers with an Alpaca-shaped body: {"code": ..., "message": ...}."""

    def __init__(self, status: int, message: str, code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {} if self.code is None else {"code": self.code}
        body["message"] = self.message
        body.update(self.extra)
        return body


def invalid(message: str) -> SimApiError:
    """The trading API's 422 for a request it understood but refuses."""
    return SimApiError(422, message, CODE_INVALID_REQUEST)


def unprocessable(message: str) -> SimApiError:
    """The trading API's 422 with code 42210000, as Alpaca answers a rule its orders guide documents (e.g.
    `{"code": 42210000, "message": "invalid stop_price 290.123. sub-penny increment does not fulfill minimum
    pricing criteria"}` in alpaca-docs content/trading/orders.md)."""
    return SimApiError(422, message, CODE_UNPROCESSABLE)


def data_error(status: int, message: str) -> SimApiError:
    """The market-data API's errors carry no "code"."""
    return SimApiError(status, message, None)
