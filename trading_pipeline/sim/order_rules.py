"""Alpaca's documented rules on which order fields go together: fractional and notional sizes, extended hours,
time in force and order class. Each refusal says where Alpaca documents it.

Sources (alpacahq/alpaca-docs): `content/trading/orders.md` (the orders guide), `content/trading/
fractional-trading.md`, `oas/trading/openapi.yaml` (postOrder, the `TimeInForce` schema). Messages are
Alpaca's where they have been seen in its answers; otherwise they say the documented rule in its words.

Two kinds of functions: `check_combinations` needs only the request (run while parsing it); `check_asset_rules`
and `check_timing_and_support` need the asset and the clock (run by the order book before it checks the account).
What Alpaca accepts but the simulator does not model (notional sizes, `extended_hours`, `cls`/`ioc`/`fok`)
is refused *after* Alpaca's rules, as the simulator's own 422, so a request Alpaca refuses is refused for
Alpaca's reason.
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from trading_pipeline.sim.errors import CODE_INVALID_REQUEST, SimApiError, invalid, unprocessable
from trading_pipeline.sim.universe import SimAsset

NEW_YORK = ZoneInfo("America/New_York")
MAX_SIZE_DECIMALS = 9
# What the simulator matches (opg: filled in the opening match, the rest canceled after it — OrderBook.
# after_opening_auction). Alpaca also takes cls, ioc and fok (oas/trading/openapi.yaml, TimeInForce).
MODELLED_TIMES_IN_FORCE = ("day", "gtc", "opg")
ADVANCED_CLASSES = ("bracket", "oco", "oto")
# oas/trading/openapi.yaml, TimeInForce: "OPG orders submitted after 9:28am but before 7:00pm ET will be
# rejected"; "CLS orders submitted after 3:50pm but before 7:00pm ET will be rejected."
AUCTION_CUTOFFS = {"opg": time(9, 28), "cls": time(15, 50)}
AUCTION_REOPENS = time(19, 0)


class OrderParams(Protocol):
    """The fields of a parsed order request these rules read (`order_requests.OrderParams`, which imports
    this module)."""

    @property
    def qty(self) -> Decimal: ...
    @property
    def notional(self) -> Decimal | None: ...
    @property
    def side(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def time_in_force(self) -> str: ...
    @property
    def order_class(self) -> str: ...
    @property
    def extended_hours(self) -> bool: ...


def is_fractional(qty: Decimal | None) -> bool:
    return qty is not None and qty != qty.to_integral_value()


def check_size(qty: Decimal | None, notional: Decimal | None) -> None:
    """qty xor notional, each with at most 9 decimals.

    content/trading/fractional-trading.md: "If both `qty` and `notional` are entered the request will be
    rejected with an error status `400`." and "Both `notional` and `qty` fields can take up to 9 decimal point
    values." (alpaca-py refuses both at once before sending: "Both qty and notional can not be set.")"""
    if qty is not None and notional is not None:
        raise SimApiError(400, "qty and notional can not both be set", CODE_INVALID_REQUEST)
    if qty is None and notional is None:
        raise invalid("qty or notional is required")
    for name, value in (("qty", qty), ("notional", notional)):
        if value is not None and -int(value.as_tuple().exponent) > MAX_SIZE_DECIMALS:
            raise invalid(f"{name} can take up to {MAX_SIZE_DECIMALS} decimal places")


def check_combinations(p: OrderParams) -> None:
    """The field combinations Alpaca refuses, whatever the asset or the time."""
    _check_fractional(p)
    _check_extended_hours(p)
    _check_time_in_force(p)


def _check_fractional(p: OrderParams) -> None:
    """Fractional qty and notional orders: DAY, simple, market.

    content/trading/fractional-trading.md: "Alpaca currently supports fractional trading for `market` and `day`
    order types" and "Since fractional shares are only for `market` order types"; alpaca-py's OrderRequest:
    notional "For stocks, only works with MarketOrders". Alpaca answers a fractional GTC bracket with
    42210000 "fractional orders must be DAY orders" and a fractional DAY bracket (or a notional one) with
    "fractional orders must be simple orders", in that order."""
    if not (is_fractional(p.qty) or p.notional is not None):
        return
    if p.time_in_force != "day":
        raise unprocessable("fractional orders must be DAY orders")
    if p.order_class != "simple":
        raise unprocessable("fractional orders must be simple orders")
    if p.type != "market":
        raise unprocessable("fractional orders must be market orders")


def _check_extended_hours(p: OrderParams) -> None:
    """`extended_hours` only with limit DAY orders, never on a bracket.

    content/trading/orders.md, "Submitting an Extended Hours Eligible Order": "Only `limit` `day` orders will be
    accepted as extended hours eligible. All other order types and TIFs will be rejected with an error."
    (Alpaca's answer: 42210000 "extended hours order must be DAY limit orders"); "Bracket Orders": "Extended
    hours are not supported. `extended_hours` must be "false" or omitted." — and for OTO "the rest of
    requirements are the same as the bracket orders"."""
    if not p.extended_hours:
        return
    if p.type != "limit" or p.time_in_force != "day":
        raise unprocessable("extended hours order must be DAY limit orders")
    if p.order_class in ("bracket", "oto"):
        raise unprocessable(f"extended hours are not supported for {p.order_class} orders")


def _check_time_in_force(p: OrderParams) -> None:
    """opg/cls only with market or limit orders; advanced orders only DAY or GTC.

    oas/trading/openapi.yaml, TimeInForce: opg "Use this TIF with a market/limit order type to submit "market on
    open" (MOO) and "limit on open" (LOO) orders", cls likewise for MOC/LOC. content/trading/orders.md,
    "Bracket Orders": "`time_in_force` must be "day" or "gtc"."; OTO: "the rest of requirements are the same as
    the bracket orders"; OCO legs "work exactly the same way as the two legs of the bracket orders"."""
    tif = p.time_in_force
    if tif in AUCTION_CUTOFFS and p.type not in ("market", "limit"):
        raise unprocessable(f"{tif} orders must be market or limit orders")
    if p.order_class in ADVANCED_CLASSES and tif not in ("day", "gtc"):
        raise unprocessable(f"{p.order_class} orders must be day or gtc orders")


def check_asset_rules(p: OrderParams, asset: SimAsset) -> None:
    """content/trading/fractional-trading.md: "If you request a fractional share order for a stock that is not
    yet fractionable, the order will get rejected with an error message that reads `requested asset is not
    fractionable`"."""
    if (is_fractional(p.qty) or p.notional is not None) and not asset.fractionable:
        raise unprocessable("requested asset is not fractionable")


def check_timing_and_support(p: OrderParams, now: datetime) -> None:
    """The auction orders' submission windows (see AUCTION_CUTOFFS), then what Alpaca accepts and the simulator
    does not model: refused as the simulator's own 422 (code 40010001), after every rule of Alpaca's."""
    cutoff = AUCTION_CUTOFFS.get(p.time_in_force)
    if cutoff is not None:
        local = now.astimezone(NEW_YORK).time()
        if cutoff < local < AUCTION_REOPENS:
            raise unprocessable(
                f"{p.time_in_force} orders are not accepted between {cutoff:%H:%M} and {AUCTION_REOPENS:%H:%M} ET"
            )
    if p.time_in_force not in MODELLED_TIMES_IN_FORCE:
        raise invalid(f"time_in_force {p.time_in_force} is not supported by the simulator")
    if p.notional is not None:
        raise invalid("notional orders are not supported by the simulator; send qty")
    if p.extended_hours:
        raise invalid("extended_hours orders are not supported by the simulator")
