"""What real accounts do to the book between a soak's runs: orders and sales in Alpaca's dashboard, positions
bought outside the pipeline, renames not yet published, endpoint outages and listings that lie."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from trading_pipeline.harness.soak_report import SoakReport
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

if TYPE_CHECKING:
    from trading_pipeline.sim.server import SimBroker

# Endpoints whose outage must never block a close (issue 14): each run needs them, none is on the critical path.
OUTAGE_ROUTES = ("GET /v2/positions", "GET /v2/orders", "GET /v2/clock")


class BookFaults:
    """Mixed into `SoakDay`: the script's faults on the broker's book, each at a share of the fault rate."""

    db: Database
    sim: SimBroker
    rng: random.Random
    report: SoakReport
    bought: Counter[str]
    drifted: set[str]
    renamed: dict[str, str]
    listing_faulty: bool
    _symbols: list[str]
    _outside_count: int

    def book_faults(self, rate: float) -> None:
        """What real accounts do to the book between runs, each at a share of `rate`: an order placed outside the
        pipeline that holds a position's shares (a GTC sell limit far above the market), shares sold behind the
        pipeline's back (a market sell in the dashboard: drift, with its fill as the evidence), a position bought
        outside the pipeline (adopted and protected), a held symbol renamed (our shares under a new ticker, not
        yet published), and one endpoint failing through all of a run's retries (an outage)."""
        held = [p for p in self.sim.market.book.positions.values() if p.qty > 1]
        if held and self.rng.random() < rate:
            position = self.rng.choice(held)
            limit = (self.sim.market.last_price(position.symbol) * 3).quantize(Decimal("0.01"))
            if self._outside_order(position.symbol, position.qty, "sell", limit=limit):
                self.report.outside_orders += 1
        if held and self.rng.random() < rate / 2:
            position = self.rng.choice(held)
            free = self.sim.market.book.qty_available(position.symbol)
            if free >= 1 and self._outside_order(position.symbol, Decimal(self.rng.randint(1, int(free))), "sell"):
                self.drifted.add(position.symbol)
                self.report.drifts += 1
        if self.rng.random() < rate / 2:
            self._buy_outside()
        if self.rng.random() < rate / 4:
            self._rename_one()
        self._listing_fault(rate)
        if self.rng.random() < rate / 2:
            route = self.rng.choice(OUTAGE_ROUTES)
            self.sim.faults.fail_next("500", count=8, route=route)
            self.report.outages += 1

    def _outside_order(self, symbol: str, qty: Decimal, side: str, *, limit: Decimal | None = None) -> bool:
        """An order placed in Alpaca's dashboard (not by the pipeline); False when the sim refused it."""
        self._outside_count += 1
        request = {
            "symbol": symbol,
            "qty": str(qty),
            "side": side,
            "type": "market" if limit is None else "limit",
            "time_in_force": "day" if limit is None else "gtc",
            "client_order_id": f"outside-{self._outside_count}",
            **({} if limit is None else {"limit_price": str(limit)}),
        }
        try:
            order = self.sim.market.submit_order(request)
        except Exception:  # refused (the shares are already held): the day just goes on
            return False
        if limit is None and order.status == "partially_filled":  # the person takes what filled, cancels the rest
            order = self.sim.market.cancel_order(order.id)
        if side == "buy":
            self.bought[symbol] += order.filled_qty
        return True

    def _free_symbols(self) -> list[str]:
        taken = {t.symbol for t in trades_repo.open_trades(self.db) + trades_repo.closing_trades(self.db)}
        taken |= set(self.sim.market.book.positions) | {o.symbol for o in self.sim.market.book.orders.values()}
        return [s for s in self._symbols if s not in taken]

    def _buy_outside(self) -> None:
        free = self._free_symbols()
        if free and self._outside_order(self.rng.choice(free), Decimal(3), "buy"):
            self.report.outside_buys += 1

    def _rename_one(self) -> None:
        """A held symbol renamed OLD → NEW (`Market.rename`), its corporate action published only after the soak
        ends: the broker shows our shares (and open orders) under NEW, and OLD no longer exists."""
        mine = [t for t in trades_repo.open_trades(self.db) if t.strategy == "soak"]
        book = self.sim.market.book
        candidates = sorted({t.symbol for t in mine if t.symbol in book.positions})
        if not candidates:
            return
        old = self.rng.choice(candidates)
        if sum(t.qty for t in mine if t.symbol == old) != book.positions[old].qty:
            return  # drifted: a rename of a position its trades do not match proves nothing
        new = next((f"{old[:4]}{c}" for c in "ZYXWV" if self.sim.market.asset(f"{old[:4]}{c}") is None), None)
        if new is None:
            return
        self.sim.market.rename(old, new, publish_delay=timedelta(days=30))
        self.bought[new] += self.bought.pop(old, Decimal(0))
        self.renamed[old] = new
        self.report.renames += 1

    def _listing_fault(self, rate: float) -> None:
        """For one run, `GET /v2/positions` answers 200 with nothing (an incident) or another account's book."""
        kind = "normal"
        if self.rng.random() < rate / 4:
            kind = self.rng.choice(("empty", "foreign"))
            self.report.listing_faults += 1
        self.listing_faulty = kind != "normal"
        self.sim.faults.config = dataclasses.replace(self.sim.faults.config, positions_listing=kind)  # no reseed

