"""Alpaca's pattern-day-trader protection, switched on for the account by a test (`Market.set_pattern_day_trader`).

content/trading/user-protections.md, "Pattern Day Trader (PDT) Protection at Alpaca": "the Alpaca Trading
platform checks the PDT rule condition every time an order is submitted from a customer. If the order could
potentially result in the account being flagged as a PDT, the order is rejected, and API returns error with
HTTP status code 403 (Forbidden)"; "A day trade is defined as a round-trip pair of trades within the same day
... A buy must occur first and then a sell of the same security must come later in the day. ... Selling short
and covering the short on the same day is also considered a day trade"; Alpaca "rejects a newly submitted
orders **on exit** of a position". Alpaca's answer: 403 {"code": 40310100, "message": "trade denied due to
pattern day trading protection"}.

The simulator does not count day trades over five business days: the switch says the account is at the limit,
so every exit of a position that an order opened in the current session (New York date) is refused.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from trading_pipeline.sim.account import SimOrder
from trading_pipeline.sim.errors import SimApiError
from trading_pipeline.sim.order_checks import AccountBook

CODE_PATTERN_DAY_TRADING = 40310100
PDT_MESSAGE = "trade denied due to pattern day trading protection"
NEW_YORK = ZoneInfo("America/New_York")


def check_day_trade(book: AccountBook, orders: dict[str, SimOrder], symbol: str, side: str) -> None:
    """Refuse an exit of `symbol` (an order on `side`) that would make a day trade while the account is flagged."""
    if not book.pattern_day_trader:
        return
    position = book.positions.get(symbol)
    if position is None:
        return
    opening_side = "buy" if position.qty > 0 else "sell"
    if side == opening_side:
        return  # adds to the position: not an exit
    today = book.market.now.astimezone(NEW_YORK).date()
    for order in orders.values():
        if order.symbol != symbol or order.side != opening_side or order.filled_qty <= 0:
            continue
        if order.position_intent not in ("buy_to_open", "sell_to_open"):
            continue
        filled = order.filled_at or order.updated_at or order.created_at
        if filled.astimezone(NEW_YORK).date() == today:
            raise SimApiError(403, PDT_MESSAGE, CODE_PATTERN_DAY_TRADING)
