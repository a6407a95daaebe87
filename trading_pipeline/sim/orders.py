"""The simulator's order book: one account's cash, positions and orders, with Alpaca's order lifecycle.

What is modelled, and how it maps to Alpaca:
- An order is validated (`order_requests.py`), checked against the account (buying power, quantity held by
  exit orders), then created with its legs. The POST response shows the order as created (`new`/`accepted`,
  nothing filled) and fills are evaluated right after (`matching.py`), so a client must look the order up to
  learn its fill, as with Alpaca. Submitted while the market is closed, orders are `accepted` and go live
  at the next open, like Alpaca's queued day orders.
- Bracket = entry + take-profit limit leg + stop-loss stop leg; OTO = entry + one leg. Legs are `held`
  until the entry fills, then `new`. OCO = take-profit limit (the parent) + stop leg on an existing
  position, both live at once. When one exit fills or is canceled, its sibling is canceled.
- Quantity held by open exit orders cannot be sold again or closed: 403 "insufficient qty available".
- Day orders expire at the close of the session they were submitted for; no extended hours; no wash-trade
  checks; buying power is Reg-T style (2 x (equity - initial margin)), less what open buy-long and
  sell-short orders hold (`order_checks.py`).
- Every id is a UUID drawn from a seeded generator, so a replayed scenario has the same ids.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from trading_pipeline.sim import matching
from trading_pipeline.sim.account import WORKING_STATUSES, AccountValues, MarketView, SimOrder, SimPosition
from trading_pipeline.sim.day_trades import check_day_trade
from trading_pipeline.sim.errors import CODE_NOT_FOUND, CODE_UNPROCESSABLE, SimApiError, invalid, unprocessable
from trading_pipeline.sim.fills import PartialFills
from trading_pipeline.sim.order_checks import (
    check_exit_levels,
    check_quantity_and_power,
    insufficient_qty,
    open_orders_value,
)
from trading_pipeline.sim.order_requests import OrderParams
from trading_pipeline.sim.order_rules import check_asset_rules, check_timing_and_support
from trading_pipeline.sim.universe import SimAsset

GTC_LIFETIME = timedelta(days=90)
CENT = Decimal("0.01")


class OrderBook:
    """Cash, positions and orders of the one simulated account. Callers hold the market lock."""

    def __init__(self, market: MarketView, *, seed: int, initial_cash: Decimal) -> None:
        self.market = market
        self._ids = random.Random(f"orders-{seed}")
        self.cash = Decimal(initial_cash)
        self.last_equity = Decimal(initial_cash)
        self.positions: dict[str, SimPosition] = {}
        self.orders: dict[str, SimOrder] = {}
        self._by_client_id: dict[str, SimOrder] = {}
        # Can fill now or at the open: not terminal, not a leg waiting for its entry. A bracket's stop leg is
        # working while Alpaca reports it `held`, so the status alone does not say whether an order works.
        self.working: dict[str, SimOrder] = {}
        # A canceled order stays `pending_cancel` for this many reads of it, then is `canceled` (0: at once).
        self.cancel_delay_lookups = 0
        self.partial_fills = PartialFills(seed=seed)  # off until configured (Market.configure_partial_fills)
        self.pattern_day_trader = False  # Alpaca's PDT protection refuses day-trade exits (`day_trades.py`)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    # ---- lookups ----

    def order(self, order_id: str) -> SimOrder:
        found = self.orders.get(order_id)
        if found is None:
            raise SimApiError(404, "order not found", CODE_NOT_FOUND)
        return found

    def order_by_client_id(self, client_order_id: str) -> SimOrder:
        found = self._by_client_id.get(client_order_id)
        if found is None:
            raise SimApiError(404, "order not found", CODE_NOT_FOUND)
        return found

    def client_order_ids(self) -> set[str]:
        return set(self._by_client_id)

    def adopt_replacement(self, old: SimOrder, new: SimOrder) -> None:
        """`new` replaces `old` (`replace.py`): it takes the old one's place among its parent's legs, its own
        legs' parent, and its place among the working orders, in one step."""
        self.orders[new.id] = new
        self._by_client_id[new.client_order_id] = new
        parent = self.orders.get(old.parent_id) if old.parent_id is not None else None
        if parent is not None:
            parent.leg_ids = [new.id if leg_id == old.id else leg_id for leg_id in parent.leg_ids]
        for leg in self.legs(new):
            leg.parent_id = new.id
        old.leg_ids = []
        if self.working.pop(old.id, None) is not None:
            self.working[new.id] = new

    def legs(self, order: SimOrder) -> list[SimOrder]:
        return [self.orders[leg_id] for leg_id in order.leg_ids]

    def position(self, symbol_or_asset_id: str) -> SimPosition:
        """The open position, by symbol or by asset id (`GET /v2/positions/{symbol_or_asset_id}` in Alpaca's
        OpenAPI spec); none is Alpaca's 404 {"code": 40410000, "message": "position does not exist"}."""
        found = self.positions.get(symbol_or_asset_id)
        if found is None:
            found = next((p for p in self.positions.values() if p.asset_id == symbol_or_asset_id), None)
        if found is None:
            raise SimApiError(404, "position does not exist", CODE_NOT_FOUND)
        return found

    def held_for_orders(self, symbol: str) -> Decimal:
        """Quantity of the position committed to open exit orders; an OCO pair commits its qty once."""
        position = self.positions.get(symbol)
        if position is None:
            return Decimal(0)
        closing_side = "sell" if position.qty > 0 else "buy"
        by_group: dict[str, Decimal] = {}
        for order in self.orders.values():
            if order.symbol != symbol or order.side != closing_side or not self.commits_shares(order):
                continue
            group = order.exit_group or order.id
            by_group[group] = max(by_group.get(group, Decimal(0)), order.qty - order.filled_qty)
        return sum(by_group.values(), Decimal(0))

    def commits_shares(self, order: SimOrder) -> bool:
        """Working orders hold shares (a bracket's `held` stop leg too), and so does one whose cancel is not
        confirmed yet; a leg waiting for its entry does not."""
        return order.id in self.working or order.status == "pending_cancel"

    def qty_available(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        if position is None:
            return Decimal(0)
        return max(Decimal(0), abs(position.qty) - self.held_for_orders(symbol))

    def account_values(self) -> AccountValues:
        long_mv = Decimal(0)
        short_mv = Decimal(0)
        for position in self.positions.values():
            value = position.qty * self.market.last_price(position.symbol)
            if position.qty > 0:
                long_mv += value
            else:
                short_mv += value
        equity = self.cash + long_mv + short_mv
        initial_margin = (long_mv - short_mv) / 2
        # Open buy-long and sell-short orders hold buying power until they fill or a cancel is asked for
        # (order_checks.py); working orders are the open ones whose cancel has not been asked.
        buying_power = max(
            Decimal(0), (equity - initial_margin) * 2 - open_orders_value(self.market, self.working.values())
        )
        return AccountValues(
            cash=self.cash,
            long_market_value=long_mv,
            short_market_value=short_mv,
            equity=equity,
            initial_margin=initial_margin,
            buying_power=buying_power.quantize(CENT),
            last_equity=self.last_equity,
        )

    # ---- submitting ----

    def place(self, params: OrderParams) -> SimOrder:
        """Create the order (and its legs) without evaluating fills; raise SimApiError like Alpaca would."""
        if params.client_order_id is not None and params.client_order_id in self._by_client_id:
            raise invalid("client_order_id must be unique")
        asset = self.market.asset(params.symbol)
        if asset is None:
            raise invalid(f"asset not found: {params.symbol}")
        if asset.status != "active" or not asset.tradable:
            raise unprocessable(f"asset {params.symbol} is not tradable")
        check_asset_rules(params, asset)
        check_timing_and_support(params, self.market.now)
        check_day_trade(self, self.orders, params.symbol, params.side)
        check_quantity_and_power(self, params, asset)
        if params.order_class in ("bracket", "oto"):
            check_exit_levels(self, params)
        return self._create(params, asset)

    def _new_order(self, params: OrderParams, asset: SimAsset, **overrides: Any) -> SimOrder:
        now = self.market.now
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "client_order_id": params.client_order_id or "",
            "symbol": asset.symbol,
            "asset_id": asset.id,
            "side": params.side,
            "qty": params.qty,
            "type": params.type,
            "time_in_force": params.time_in_force,
            "order_class": params.order_class,
            "status": "new" if self.market.session_open else "accepted",
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "limit_price": params.limit_price,
            "stop_price": params.stop_price,
        }
        fields.update(overrides)
        order = SimOrder(**fields)
        if not order.client_order_id:
            order.client_order_id = self.new_id()
        order.expires_at = self.market.day_order_expiry() if order.time_in_force == "day" else now + GTC_LIFETIME
        order.position_intent = self._position_intent(order)
        self.orders[order.id] = order
        self._by_client_id[order.client_order_id] = order
        if order.status in WORKING_STATUSES:
            self.working[order.id] = order
        return order

    def _position_intent(self, order: SimOrder) -> str:
        position = self.positions.get(order.symbol)
        qty = position.qty if position is not None else Decimal(0)
        if order.side == "buy":
            return "buy_to_close" if qty < 0 else "buy_to_open"
        return "sell_to_close" if qty > 0 else "sell_to_open"

    def _create(self, params: OrderParams, asset: SimAsset) -> SimOrder:
        exit_side = "sell" if params.side == "buy" else "buy"
        if params.order_class == "oco":
            limit = params.take_profit_limit_price or params.limit_price
            parent = self._new_order(params, asset, limit_price=limit, stop_price=None)
            parent.exit_group = parent.id
            # Both exits work at once; the stop leg is reported `held` like a filled bracket's.
            leg = self._new_leg(params, asset, parent, side=params.side, stop_leg=True, status="held")
            leg.exit_group = parent.id
            self.working[leg.id] = leg
            return parent
        parent = self._new_order(params, asset)
        if params.order_class in ("bracket", "oto"):
            group = f"{parent.id}:exits" if params.order_class == "bracket" else None
            if params.take_profit_limit_price is not None:
                leg = self._new_leg(params, asset, parent, side=exit_side, stop_leg=False, status="held")
                leg.exit_group = group
            if params.stop_loss_stop_price is not None:
                leg = self._new_leg(params, asset, parent, side=exit_side, stop_leg=True, status="held")
                leg.exit_group = group
        return parent

    def _new_leg(
        self, params: OrderParams, asset: SimAsset, parent: SimOrder, *, side: str, stop_leg: bool, status: str
    ) -> SimOrder:
        if stop_leg:
            order_type = "stop_limit" if params.stop_loss_limit_price is not None else "stop"
            limit, stop = params.stop_loss_limit_price, params.stop_loss_stop_price
        else:
            order_type, limit, stop = "limit", params.take_profit_limit_price, None
        leg_params = OrderParams(
            symbol=params.symbol,
            qty=params.qty,
            side=side,
            type=order_type,
            time_in_force=params.time_in_force,
            order_class=params.order_class,
        )
        leg = self._new_order(leg_params, asset, status=status, limit_price=limit, stop_price=stop, parent_id=parent.id)
        leg.position_intent = "sell_to_close" if side == "sell" else "buy_to_close"  # an exit, whenever it fills
        parent.leg_ids.append(leg.id)
        return leg

    # ---- canceling and closing ----

    def cancel(self, order_id: str) -> SimOrder:
        """`DELETE /v2/orders/{id}`. Alpaca's OpenAPI spec (deleteOrderByOrderID): "If the order is no longer
        cancelable, the request will be rejected with status 422; otherwise accepted with return status 204";
        the orders guide: an order "may be canceled ... up until the point it reaches a state of either
        filled, canceled, or expired" — so a `pending_cancel` order takes a second DELETE (nothing changes).

        Accepted is not done: the order is `pending_cancel` ("The order is waiting to be canceled") until the
        venue confirms. With `cancel_delay_lookups` = N the sim shows that for N reads of the order, then
        `canceled`; a pending order no longer fills but still holds its shares, so a client must wait for the
        confirmation before it sells them."""
        order = self.order(order_id)
        if order.is_terminal:
            raise SimApiError(422, f'order is already in "{order.status}" state', CODE_UNPROCESSABLE)
        for member in self._cancel_group(order):
            if member.status != "pending_cancel":
                self._request_cancel(member)
        return order

    def _request_cancel(self, order: SimOrder) -> None:
        if self.cancel_delay_lookups <= 0:
            self._cancel(order)
            return
        order.status = "pending_cancel"
        order.cancel_reads_left = self.cancel_delay_lookups
        order.updated_at = self.market.now
        self.working.pop(order.id, None)

    def observe(self, order: SimOrder, *, with_legs: bool = True) -> SimOrder:
        """A client reads `order` (and the legs shown with it): one read nearer to a pending cancel's end."""
        for seen in (order, *self.legs(order)) if with_legs else (order,):
            if seen.status == "pending_cancel":
                if seen.cancel_reads_left > 0:
                    seen.cancel_reads_left -= 1
                else:
                    self._cancel(seen)
        return order

    def _cancel_group(self, order: SimOrder) -> list[SimOrder]:
        """What one cancel takes down. Alpaca docs (trading/orders.md, bracket orders): "If any one of the orders
        is canceled, any remaining open order in the group is canceled" — the legs with their parent, a leg's
        sibling, and a leg's parent while it is still open (a filled entry stays filled)."""
        parent = self.orders.get(order.parent_id) if order.parent_id is not None else None
        head = parent if parent is not None and parent.is_open else order
        group = {o.id: o for o in (head, *self.legs(head), order)}
        if order.exit_group is not None:
            group.update((o.id, o) for o in self.orders.values() if o.exit_group == order.exit_group)
        return [o for o in group.values() if o.is_open]

    def _cancel(self, order: SimOrder, status: str = "canceled") -> None:
        now = self.market.now
        order.status = status
        order.updated_at = now
        if status == "canceled":
            order.canceled_at = now
        else:
            order.expired_at = now
        self.working.pop(order.id, None)

    def cancel_siblings(self, order: SimOrder) -> None:
        if order.exit_group is None:
            return
        for other in self.orders.values():
            if other.exit_group == order.exit_group and other.id != order.id and not other.is_terminal:
                self._cancel(other)

    def close_position(self, symbol_or_asset_id: str) -> SimOrder:
        position = self.position(symbol_or_asset_id)
        symbol = position.symbol
        qty = abs(position.qty)
        if self.qty_available(symbol) < qty:
            raise insufficient_qty(self, symbol, qty)
        asset = self.market.asset(symbol)
        assert asset is not None
        if asset.status != "active" or not asset.tradable:
            raise unprocessable(f"asset {symbol} is not tradable")
        check_day_trade(self, self.orders, symbol, "sell" if position.qty > 0 else "buy")
        params = OrderParams(
            symbol=symbol,
            qty=qty,
            side="sell" if position.qty > 0 else "buy",
            type="market",
            time_in_force="day",
        )
        return self._create(params, asset)

    # ---- the clock's hooks ----

    def on_open(self) -> None:
        """Orders accepted while closed become live at the open."""
        now = self.market.now
        for order in self.working.values():
            if order.status == "accepted":
                order.status = "new"
                order.updated_at = now

    def after_opening_auction(self) -> None:
        """content/trading/orders.md, `opg`: "This order is eligible to execute only in the market opening
        auction. Any unfilled orders after the open will be cancelled." """
        for order in list(self.working.values()):
            if order.time_in_force == "opg":
                self._cancel(order)

    def on_close(self) -> None:
        """Day orders end with the session; remember equity for last_equity."""
        now = self.market.now
        for order in list(self.orders.values()):
            if order.status == "pending_cancel":  # the venue confirms what it was asked before the day ends
                self._cancel(order)
            elif order.is_open and order.expires_at is not None and order.expires_at <= now:
                self._cancel(order, status="expired")
                for leg in self.legs(order):
                    if not leg.is_terminal:
                        self._cancel(leg)
        self.last_equity = self.account_values().equity

    # ---- fills ----

    def evaluate(self) -> int:
        """Fill every working order whose condition holds at the current quotes (`matching.py`)."""
        return matching.evaluate(self)
