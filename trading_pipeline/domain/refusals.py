"""What a broker's refusal of an exit order means for the next attempt.

Alpaca answers an order it will not take with 403 or 422 and a body `{"code": ..., "message": ...}`:
- *quantity*: 403 "insufficient qty available for order (requested: 10, available: 4)" with `available`,
  `existing_qty` and `held_for_orders` — shares are held by open orders, or fewer are held than asked. Trading API
  notes: "an order that would flip your position in that stock from long to short or short to long is not
  supported and will return a 403" (alpaca-docs content/api-references/trading-api/_index.md). Resized and
  retried within the run.
- *lasting*: the pattern-day-trading protection (403, code 40310100), an asset that is not tradable or not
  active (422), an account whose trading is blocked (403). None of these changes within minutes: the exit is
  not re-sent every sensor tick but at a bounded cadence (`RETRY_LASTING_REFUSAL_AFTER`), and a person is told
  what they can do.
- anything else: retried by the next run as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

PDT_CODE = 40310100
RETRY_LASTING_REFUSAL_AFTER = timedelta(minutes=15)

QUANTITY_WORDS = ("insufficient qty", "held for orders", "qty available")
_LASTING_WORDS = {
    "pattern day": "the pattern-day-trading protection",
    "day trading protection": "the pattern-day-trading protection",
    "not tradable": "the asset is not tradable",
    "cannot be traded": "the asset is not tradable",
    "not active": "the asset is not active",
    "trading is blocked": "the account's trading is blocked",
    "account is blocked": "the account is blocked",
    "trades blocked": "the account's trading is blocked",
    "not authorized to trade": "the account may not trade",
}


class RefusalKind(StrEnum):
    QUANTITY = "quantity"
    LASTING = "lasting"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    cause: str  # in a trader's words: "the pattern-day-trading protection"
    held: Decimal | None = None  # a quantity refusal's `existing_qty`: the shares held, when the broker said

    @property
    def what_to_do(self) -> str:
        if self.kind is not RefusalKind.LASTING:
            return "nothing: the pipeline retries"
        return (
            "close the position in Alpaca's dashboard (or call Alpaca support); the pipeline retries every "
            f"{int(RETRY_LASTING_REFUSAL_AFTER.total_seconds() // 60)} minutes and after the next open"
        )


def classify_refusal(status: int | None, code: int | None, message: str, details: dict[str, str]) -> Refusal:
    text = message.lower()
    if code == PDT_CODE:
        return Refusal(RefusalKind.LASTING, "the pattern-day-trading protection")
    if any(word in text for word in QUANTITY_WORDS):
        held = _quantity(details.get("existing_qty"))
        return Refusal(RefusalKind.QUANTITY, "shares held for orders, or fewer held than asked", held)
    for word, cause in _LASTING_WORDS.items():
        if word in text:
            return Refusal(RefusalKind.LASTING, cause)
    return Refusal(RefusalKind.OTHER, f"refused ({status or 'no status'}): {message}")


def _quantity(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() and value >= 0 else None
