"""Alpaca's JSON shapes for the simulator's objects.

Trading API v2: money and quantities are JSON strings, assets carry `"class"`, ids are UUIDs, times are
RFC 3339 (UTC with microseconds; the clock in America/New_York with its offset, as Alpaca sends it).
Market-data API v2: short field names (`ap`, `as`, `bp`, `bs`, `t`, …) and plain JSON numbers,
timestamps with nanoseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from trading_pipeline.sim.account import SimOrder, SimPosition
from trading_pipeline.sim.history import SimBar
from trading_pipeline.sim.market import ClockState, Market, SimQuote
from trading_pipeline.sim.universe import SimAsset

NEW_YORK = ZoneInfo("America/New_York")
_SIX_PLACES = Decimal("0.000001")


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_nanos(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def money(value: Decimal | None) -> str | None:
    """A decimal as Alpaca writes it: no exponent, no trailing zeros beyond what the value needs."""
    if value is None:
        return None
    text = format(value.quantize(_SIX_PLACES).normalize(), "f")
    return "0" if text in ("-0", "") else text


def number(value: Decimal) -> float | int:
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


# ---- trading API ----------------------------------------------------------------------------------------


def asset_json(asset: SimAsset) -> dict[str, Any]:
    return {
        "id": asset.id,
        "class": "us_equity",
        "exchange": asset.exchange,
        "symbol": asset.symbol,
        "name": asset.name,
        "status": asset.status,
        "tradable": asset.tradable,
        "marginable": asset.marginable,
        "maintenance_margin_requirement": 30,
        "margin_requirement_long": "30",
        "margin_requirement_short": "30",
        "shortable": asset.shortable,
        "easy_to_borrow": asset.easy_to_borrow,
        "fractionable": asset.fractionable,
        "attributes": [],
    }


def clock_json(clock: ClockState) -> dict[str, Any]:
    return {
        "timestamp": clock.timestamp.astimezone(NEW_YORK).isoformat(timespec="microseconds"),
        "is_open": clock.is_open,
        "next_open": clock.next_open.astimezone(NEW_YORK).isoformat(),
        "next_close": clock.next_close.astimezone(NEW_YORK).isoformat(),
    }


def calendar_json(market: Market, index: int) -> dict[str, Any]:
    sessions = market.sessions
    day = sessions.days[index]
    settlement = sessions.days[index + 1] if index + 1 < len(sessions) else day
    return {
        "date": day.isoformat(),
        "open": sessions.opens[index].astimezone(NEW_YORK).strftime("%H:%M"),
        "close": sessions.closes[index].astimezone(NEW_YORK).strftime("%H:%M"),
        "session_open": "0400",
        "session_close": "2000",
        "settlement_date": settlement.isoformat(),
    }


def account_json(market: Market) -> dict[str, Any]:
    values = market.book.account_values()
    equity = money(values.equity)
    return {
        "id": market.account_id,
        "admin_configurations": {},
        "user_configurations": None,
        "account_number": market.account_number,
        "status": "ACTIVE",
        "crypto_status": "INACTIVE",
        "options_approved_level": 0,
        "options_trading_level": 0,
        "currency": "USD",
        "buying_power": money(values.buying_power),
        "regt_buying_power": money(values.buying_power),
        "daytrading_buying_power": "0",
        "effective_buying_power": money(values.buying_power),
        "non_marginable_buying_power": money(max(Decimal(0), values.cash)),
        "options_buying_power": "0",
        "bod_dtbp": "0",
        "cash": money(values.cash),
        "accrued_fees": "0",
        "portfolio_value": equity,
        "pattern_day_trader": market.book.pattern_day_trader,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "created_at": rfc3339(market.created_at),
        "trade_suspended_by_user": False,
        "multiplier": "2",
        "shorting_enabled": True,
        "equity": equity,
        "last_equity": money(values.last_equity),
        "long_market_value": money(values.long_market_value),
        "short_market_value": money(values.short_market_value),
        "position_market_value": money(values.long_market_value - values.short_market_value),
        "initial_margin": money(values.initial_margin),
        "maintenance_margin": money(values.initial_margin * Decimal("0.6")),
        "last_maintenance_margin": "0",
        "sma": "0",
        "daytrade_count": 0,
        "balance_asof": market.now.astimezone(NEW_YORK).date().isoformat(),
        "crypto_tier": 0,
        "intraday_adjustments": "0",
        "pending_reg_taf_fees": "0",
    }


def position_json(market: Market, position: SimPosition) -> dict[str, Any]:
    price = market.last_price(position.symbol)
    previous = market.previous_close(position.symbol)
    qty = position.qty
    market_value = qty * price
    cost_basis = qty * position.avg_entry_price
    unrealized = market_value - cost_basis
    intraday = qty * (price - previous)
    return {
        "asset_id": position.asset_id,
        "symbol": position.symbol,
        "exchange": position.exchange,
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": money(qty),
        "qty_available": money(market.book.qty_available(position.symbol) * (1 if qty > 0 else -1)),
        "avg_entry_price": money(position.avg_entry_price),
        "side": position.side,
        "market_value": money(market_value),
        "cost_basis": money(cost_basis),
        "unrealized_pl": money(unrealized),
        "unrealized_plpc": money(unrealized / abs(cost_basis)) if cost_basis else "0",
        "unrealized_intraday_pl": money(intraday),
        "unrealized_intraday_plpc": money(intraday / abs(qty * previous)) if previous else "0",
        "current_price": money(price),
        "lastday_price": money(previous),
        "change_today": money(price / previous - 1) if previous else "0",
    }


FOREIGN_BOOK_SIZE = 3


def foreign_positions_json(market: Market) -> list[dict[str, Any]]:
    """Another account's positions (the `positions_listing="foreign"` fault): the last few tradable symbols this
    account does not hold, 10, 20, 30 shares bought at today's price. A client must not take them for its own."""
    held = set(market.book.positions)
    chosen = [a for a in reversed(market.assets) if a.tradable and a.symbol not in held][:FOREIGN_BOOK_SIZE]
    listing = []
    for n, asset in enumerate(sorted(chosen, key=lambda a: a.symbol), start=1):
        qty = Decimal(10 * n)
        body = position_json(
            market, SimPosition(asset.symbol, asset.id, asset.exchange, qty, market.last_price(asset.symbol))
        )
        body["qty_available"] = money(qty)
        listing.append(body)
    return listing


def order_json(market: Market, order: SimOrder, *, nested: bool = True) -> dict[str, Any]:
    legs = [order_json(market, leg, nested=False) for leg in market.book.legs(order)] if nested else None
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "created_at": rfc3339(order.created_at),
        "updated_at": rfc3339(order.updated_at),
        "submitted_at": rfc3339(order.submitted_at),
        "filled_at": rfc3339(order.filled_at),
        "expired_at": rfc3339(order.expired_at),
        "canceled_at": rfc3339(order.canceled_at),
        "failed_at": None,
        "replaced_at": rfc3339(order.replaced_at),
        "replaced_by": order.replaced_by,
        "replaces": order.replaces,
        "asset_id": order.asset_id,
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "notional": None,
        "qty": money(order.qty),
        "filled_qty": money(order.filled_qty),
        "filled_avg_price": money(order.filled_avg_price),
        # Alpaca writes "" for simple orders; alpaca-py maps it back to "simple".
        "order_class": "" if order.order_class == "simple" else order.order_class,
        "order_type": order.type,
        "type": order.type,
        "side": order.side,
        "position_intent": order.position_intent,
        "time_in_force": order.time_in_force,
        "limit_price": money(order.limit_price),
        "stop_price": money(order.stop_price),
        "status": order.status,
        "extended_hours": order.extended_hours,
        "legs": legs or None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "subtag": None,
        "source": None,
        "expires_at": rfc3339(order.expires_at),
    }


# ---- market-data API ------------------------------------------------------------------------------------


def quote_json(quote: SimQuote) -> dict[str, Any]:
    return {
        "ap": number(quote.ask),
        "as": quote.ask_size,
        "ax": "V",
        "bp": number(quote.bid),
        "bs": quote.bid_size,
        "bx": "V",
        "c": ["R"],
        "t": rfc3339_nanos(quote.timestamp),
        "z": "A",
    }


def bar_json(bar: SimBar) -> dict[str, Any]:
    return {
        "c": number(bar.close),
        "h": number(bar.high),
        "l": number(bar.low),
        "n": bar.trade_count,
        "o": number(bar.open),
        "t": bar.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "v": bar.volume,
        "vw": number(bar.vwap),
    }


def trade_json(quote: SimQuote, price: Decimal) -> dict[str, Any]:
    return {
        "c": ["@"],
        "i": 1,
        "p": number(price),
        "s": 100,
        "t": rfc3339_nanos(quote.timestamp),
        "x": "V",
        "z": "A",
    }
