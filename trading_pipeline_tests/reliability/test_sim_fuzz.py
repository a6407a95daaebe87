"""Fuzzing the sim broker's request parsing over raw HTTP (hypothesis): random methods, paths, query strings,
headers and JSON bodies. The server must keep answering, and garbage gets a 4xx, never a 5xx.

What uvicorn (httptools) answers to malformed HTTP: 400 "Invalid HTTP request received." with the connection
closed for a request line or headers it cannot parse — binary junk, no target, a version other than
HTTP/0.9-2.0 (e.g. HTTP/3.0), a negative or non-numeric Content-Length, a 70 kB target. A request line
with HTTP/1.0 or HTTP/2.0 is served as HTTP/1.x (so a 4xx here comes from the sim: no auth). Declared bodies
over the sim's 1 MB limit get the sim's own 400."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trading_pipeline.sim.routes import ROUTES
from trading_pipeline.sim.server import SimBroker
from trading_pipeline_tests.sim_fixtures import TEST_KEY_ID, TEST_SECRET, running_sim

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def sim() -> Iterator[SimBroker]:
    with running_sim(realtime=False, n_symbols=100) as simulator:
        yield simulator


def exchange(sim: SimBroker, raw: bytes, timeout: float = 5.0) -> int:
    """Send one raw request on a fresh connection; return the response's status code."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=timeout) as conn:
        conn.sendall(raw)
        received = b""
        while b"\r\n" not in received:
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
    found = re.match(rb"HTTP/1\.1 (\d{3}) ", received)  # every answer, even to garbage, has a status line
    assert found is not None, f"no status line in the answer: {received!r}"
    return int(found.group(1))


def still_answers(sim: SimBroker) -> bool:
    request = (
        f"GET /v2/clock HTTP/1.1\r\nHost: sim\r\nAPCA-API-KEY-ID: {TEST_KEY_ID}\r\n"
        f"APCA-API-SECRET-KEY: {TEST_SECRET}\r\nConnection: close\r\n\r\n"
    ).encode()
    return exchange(sim, request) == 200


ORDER_KEYS = [
    "symbol", "qty", "notional", "side", "type", "time_in_force", "client_order_id", "limit_price", "stop_price",
    "order_class", "take_profit", "stop_loss", "extended_hours", "trail_percent",
]  # fmt: skip
json_keys = st.one_of(st.sampled_from(ORDER_KEYS), st.text(max_size=8))
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["buy", "sell", "market", "limit", "stop", "day", "gtc", "bracket", "oco", "oto", "SPY", "AAA",
                     "1e999999", "1e30", "-0", "NaN", "Infinity", "0.000000001", "12345678901234567890"]),
)  # fmt: skip
json_bodies = st.recursive(
    json_leaves, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(json_keys, c, max_size=6)), max_leaves=20
)
templates = [route.path for route in ROUTES if route.path.startswith("/v2/")]  # the Alpaca routes, not /_sim/
segment = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=10)


@st.composite
def paths(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        template = draw(st.sampled_from(templates))
        filled = template.replace("{symbol}", quote(draw(segment))).replace("{order_id}", quote(draw(segment)))
        return filled
    parts = draw(st.lists(segment, min_size=0, max_size=4))
    return "/" + "/".join(quote(part, safe="") for part in parts)


queries = st.dictionaries(
    st.one_of(st.sampled_from(["symbols", "feed", "limit", "status", "start", "end", "timeframe", "page_token",
                               "client_order_id", "nested", "direction", "after", "until", "side", "qty"]),
              st.text(max_size=6)),
    st.one_of(st.text(max_size=20), st.sampled_from(["AAA,BBB", "", ",", "-1", "99999999999", "1Day", "iex",
                                                     "2026-11-24", "not-a-date", "all", "%ZZ", "\u00c4"])),
    max_size=5,
)  # fmt: skip
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PATCH", "PUT"]))
    target = draw(paths())
    query = draw(queries)
    if query:
        target += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe=',')}" for k, v in query.items())
    headers = {"Host": "sim", "Connection": "close"}
    if draw(st.booleans()):
        headers["APCA-API-KEY-ID"] = draw(st.one_of(st.just(TEST_KEY_ID), header_values))
        headers["APCA-API-SECRET-KEY"] = draw(st.one_of(st.just(TEST_SECRET), header_values))
    for name, value in draw(st.dictionaries(st.sampled_from(["Content-Type", "Accept", "X-Junk", "Retry"]),
                                            header_values, max_size=3)).items():  # fmt: skip
        headers[name] = value
    kind = draw(st.sampled_from(["json", "bytes", "none"]))
    if kind == "json":
        body = json.dumps(draw(json_bodies)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=64))
    else:
        body = b""
    headers["Content-Length"] = str(len(body))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1", errors="replace") + body


FUZZ = settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def post(path: str, body: object) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nAPCA-API-KEY-ID: {TEST_KEY_ID}\r\n"
        f"APCA-API-SECRET-KEY: {TEST_SECRET}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


@FUZZ
@given(raw=requests())
def test_random_requests_get_an_answer_and_never_a_server_error(sim: SimBroker, raw: bytes) -> None:
    status = exchange(sim, raw)
    assert status < 500, raw
    sim.faults.clear()


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01\x02 garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/3.0\r\n\r\n",
        b"GET /v2/clock HTTP/2.0\r\n\r\n",
        b"GET /v2/clock HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v2/orders HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        b"POST /v2/orders HTTP/1.1\r\nContent-Length: twelve\r\n\r\n",
        b"GET /" + b"A" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"GET /v2/clock HTTP/1.1\r\n" + b"X-H: v\r\n" * 200 + b"\r\n",
        b"GET /v2/stocks/quotes/latest?symbols=" + ",".join(["AAA"] * 5000).encode() + b" HTTP/1.1\r\n\r\n",
    ],
    ids=[
        "binary",
        "no-target",
        "http-3",
        "http-2",
        "negative-length",
        "huge-length",
        "text-length",
        "70k-uri",
        "200-headers",
        "5000-symbols",
    ],
)
def test_malformed_http_is_refused_cleanly(sim: SimBroker, raw: bytes) -> None:
    status = exchange(sim, raw)
    assert 400 <= status < 500, status
    assert still_answers(sim)


numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e30", "1e999999", "-1e999999", "1e-999999", "NaN", "Infinity", "-0", "0x10", "1_000", ""]),
    st.text(max_size=8),
    st.none(),
)
choices = {
    "side": ["buy", "sell", "BUY", "hold"],
    "type": ["market", "limit", "stop", "stop_limit", "trailing_stop", "Market"],
    "time_in_force": ["day", "gtc", "ioc", "opg"],
    "order_class": ["simple", "bracket", "oco", "oto", "mleg", ""],
}


@st.composite
def order_posts(draw: st.DrawFn) -> bytes:
    """Authorised POST /v2/orders with an order-shaped body whose fields take adversarial values."""
    body: dict[str, object] = {"symbol": draw(st.sampled_from(["AAA", "SPY", "ÄBC", "", "a" * 200, "A.B"]))}
    for key in ("qty", "notional", "limit_price", "stop_price"):
        if draw(st.booleans()):
            body[key] = draw(numbers)
    for key, values in choices.items():
        if draw(st.integers(0, 3)):
            body[key] = draw(st.one_of(st.sampled_from(values), json_leaves))
    for key, field in (("take_profit", "limit_price"), ("stop_loss", "stop_price")):
        if draw(st.booleans()):
            body[key] = draw(st.one_of(st.fixed_dictionaries({field: numbers}), json_bodies))
    if draw(st.booleans()):
        body["client_order_id"] = draw(st.one_of(st.text(max_size=140), json_leaves))
    if draw(st.integers(0, 5)) == 0:
        body["extended_hours"] = draw(json_leaves)
    return post("/v2/orders", draw(json_bodies) if draw(st.integers(0, 9)) == 0 else body)


@FUZZ
@given(raw=order_posts())
@example(raw=post("/v2/orders", {"symbol": "AAA", "qty": "1e30"}))  # was a 500: InvalidOperation in quantize
@example(raw=post("/v2/orders", {"symbol": "AAA", "qty": 1, "type": "limit", "limit_price": 1e300}))
def test_adversarial_order_bodies_are_refused_with_a_4xx(sim: SimBroker, raw: bytes) -> None:
    status = exchange(sim, raw)
    assert status < 500, raw


admin_bodies = st.one_of(
    st.fixed_dictionaries({"advance_seconds": st.one_of(numbers, st.floats(min_value=1e9), st.integers(10**9))}),
    st.fixed_dictionaries({"set": st.one_of(st.text(max_size=30), st.sampled_from(["9999-12-31", "1900-01-01"]))}),
    st.fixed_dictionaries(
        {"kind": st.sampled_from(["gap", "set_price", "stale", "halt", "resume", "explode"]),
         "symbol": st.sampled_from(["AAA", "ZZZZZ", ""]), "pct": numbers, "bid": numbers, "ask": numbers}
    ),
    json_bodies,
)  # fmt: skip


@FUZZ
@given(path=st.sampled_from(["/_sim/clock", "/_sim/scenario"]), body=admin_bodies)
@example(path="/_sim/clock", body={"advance_seconds": 10**30})  # was a 500: OverflowError
@example(path="/_sim/clock", body={"advance_seconds": 10**10})  # was ~30 s under the market lock, then a 500
def test_adversarial_admin_bodies_never_break_the_simulator(sim: SimBroker, path: str, body: object) -> None:
    status = exchange(sim, post(path, body))
    assert status < 500, (path, body)


def test_the_server_still_answers_after_the_fuzz(sim: SimBroker) -> None:
    assert still_answers(sim)
