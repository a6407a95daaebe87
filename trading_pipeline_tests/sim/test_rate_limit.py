"""The sim enforces Alpaca's request limit when asked: 200 per minute per key and API, a 429 with Alpaca's body
beyond it, X-RateLimit-* on every answer. The quota's clock is injected, so "within one minute" is exact."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import requests

from trading_pipeline.sim.rate_limit import RateLimitConfig, SimRateLimit
from trading_pipeline.sim.server import SimBroker
from trading_pipeline_tests.sim_fixtures import running_sim, trading_headers

T0 = 1_800_000_000.5


class Frozen:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Frozen:
    return Frozen()


@pytest.fixture
def sim(clock: Frozen) -> Iterator[SimBroker]:
    with running_sim(n_symbols=20, realtime=False) as running:
        running.rate_limit = SimRateLimit(RateLimitConfig.alpaca(), clock=clock)
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers.update(trading_headers())
        yield http


def test_the_201st_request_in_a_minute_is_429_with_alpacas_body_and_headers(
    sim: SimBroker, session: requests.Session, clock: Frozen
) -> None:
    reset = str(math.ceil(T0 + 60))
    for n in range(1, 201):
        answer = session.get(f"{sim.url}/v2/clock")
        assert answer.status_code == 200, (n, answer.text)
        assert answer.headers["X-RateLimit-Limit"] == "200"
        assert answer.headers["X-RateLimit-Remaining"] == str(200 - n)
        assert answer.headers["X-RateLimit-Reset"] == reset
    over = session.get(f"{sim.url}/v2/account")
    assert over.status_code == 429
    assert over.json() == {"code": 42910000, "message": "rate limit exceeded"}
    assert over.headers["X-RateLimit-Limit"] == "200"
    assert over.headers["X-RateLimit-Remaining"] == "0"
    assert over.headers["X-RateLimit-Reset"] == reset
    assert sim.rate_limit.counters()["limited"] == {"GET /v2/account": 1}
    assert sim.requests("GET /v2/account") == 1  # a refused request is still a request

    clock.now = T0 + 60  # the window turns over: the whole quota again
    again = session.get(f"{sim.url}/v2/account")
    assert again.status_code == 200
    assert again.headers["X-RateLimit-Remaining"] == "199"
    assert again.headers["X-RateLimit-Reset"] == str(math.ceil(T0 + 120))


def test_the_data_api_has_its_own_quota_and_its_429_has_no_code(sim: SimBroker, session: requests.Session) -> None:
    sim.rate_limit.configure(trading=2, data=1)
    assert [session.get(f"{sim.url}/v2/clock").status_code for _ in range(3)] == [200, 200, 429]
    symbol = sim.market.assets[0].symbol
    quotes = f"{sim.url}/v2/stocks/quotes/latest?symbols={symbol}"
    first = session.get(quotes)
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "0"
    second = session.get(quotes)
    assert second.status_code == 429 and second.json() == {"message": "too many requests."}


def test_quotas_are_per_key_and_admin_and_unauthenticated_requests_spend_none(sim: SimBroker) -> None:
    sim.rate_limit.configure(trading=1)
    key = {"APCA-API-SECRET-KEY": "s"}
    assert requests.get(f"{sim.url}/v2/clock", headers={**key, "APCA-API-KEY-ID": "one"}).status_code == 200
    assert requests.get(f"{sim.url}/v2/clock", headers={**key, "APCA-API-KEY-ID": "two"}).status_code == 200
    assert requests.get(f"{sim.url}/v2/clock", headers={**key, "APCA-API-KEY-ID": "one"}).status_code == 429
    assert requests.get(f"{sim.url}/v2/clock").status_code == 401  # no key: auth answers, not the limit
    for _ in range(3):
        assert requests.get(f"{sim.url}/_sim/counters").status_code == 200
    assert sim.rate_limit.counters()["limited_total"] == 1


def test_off_by_default_no_headers_and_no_limit() -> None:
    with running_sim(n_symbols=20, realtime=False) as sim, requests.Session() as http:
        http.headers.update(trading_headers())
        answers = [http.get(f"{sim.url}/v2/clock") for _ in range(250)]
    assert {a.status_code for a in answers} == {200}
    assert not any("X-RateLimit-Limit" in a.headers for a in answers)


def test_the_admin_route_switches_the_limit_on_and_off(sim: SimBroker, session: requests.Session) -> None:
    sim.rate_limit.configure(trading=None, data=None)
    answer = requests.post(f"{sim.url}/_sim/rate_limit", json={"trading": 1, "window_seconds": 5})
    assert answer.status_code == 200
    assert answer.json()["config"] == {"trading": 1, "data": None, "window_seconds": 5}
    assert [session.get(f"{sim.url}/v2/clock").status_code for _ in range(2)] == [200, 429]
    state = requests.get(f"{sim.url}/_sim/rate_limit").json()
    assert state["counters"]["limited"] == {"GET /v2/clock": 1}
    alpaca = requests.post(f"{sim.url}/_sim/rate_limit", json={"alpaca": True, "reset_counters": True}).json()
    assert alpaca["config"]["trading"] == 200 == alpaca["config"]["data"]
    assert alpaca["counters"]["limited_total"] == 0
    bad = requests.post(f"{sim.url}/_sim/rate_limit", json={"trading": 0})
    assert bad.status_code == 422 and "trading" in bad.json()["message"]
    assert requests.post(f"{sim.url}/_sim/rate_limit", json={"bogus": 1}).status_code == 422
