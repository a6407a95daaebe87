"""`POST /_sim/positions`: drift at the broker (shares gone behind every client's back), seen through alpaca-py."""

from __future__ import annotations

from decimal import Decimal

import requests

from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols


def test_a_drifted_position_is_what_the_broker_then_reports() -> None:
    with running_sim() as sim:
        a, b = tradable_symbols(sim.market, 2)
        for symbol in (a, b):
            sim.market.submit_order(
                {"symbol": symbol, "qty": 55, "side": "buy", "type": "market", "time_in_force": "day"}
            )
        broker = make_broker(sim)
        try:
            shrunk = requests.post(sim.url + "/_sim/positions", json={"symbol": a, "qty": 27}, timeout=5)
            assert shrunk.status_code == 200 and shrunk.json() == {"symbol": a, "qty": "27"}
            gone = requests.post(sim.url + "/_sim/positions", json={"symbol": b, "qty": 0}, timeout=5)
            assert gone.json()["qty"] == "0"
            held = {p.symbol: p.qty for p in broker.positions()}
            assert held == {a: Decimal(27)}
            too_many = requests.post(sim.url + "/_sim/positions", json={"symbol": a, "qty": 28}, timeout=5)
            assert too_many.status_code == 422 and "between 0 and the 27 held" in too_many.json()["message"]
            missing = requests.post(sim.url + "/_sim/positions", json={"symbol": b, "qty": 1}, timeout=5)
            assert missing.status_code == 422 and "no open position" in missing.json()["message"]
            assert requests.post(sim.url + "/_sim/positions", json={"qty": 1}, timeout=5).status_code == 422
        finally:
            broker.close()
