"""A tiny HTTP server that answers with crafted broker payloads (NaN prices, missing fields, 10,000 symbols …).

`AlpacaBroker` is pointed at it like at Alpaca; each route's answer is a function of the request, so a test
states exactly what "the broker" sends. Unknown routes answer 404 the way Alpaca does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, Any]  # (status, body: bytes/str sent as is, anything else as JSON)
Route = Callable[[dict[str, str], Any], Answer]  # (query, parsed JSON body or None) → answer


class PayloadServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def _answer(self, method: str) -> None:
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                sent = json.loads(self.rfile.read(length)) if length else None
                server.requests.append((method, split.path, query))
                route = server.routes.get((method, split.path))
                status, body = route(query, sent) if route else (404, {"code": 40410000, "message": "not found"})
                payload = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else None)
                if payload is None:
                    payload = json.dumps(body).encode()  # NaN stays NaN: Python writes it, requests reads it
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, method: str, path: str, answer: Route) -> None:
        self.routes[(method, path)] = answer


@contextmanager
def payload_server() -> Iterator[PayloadServer]:
    server = PayloadServer()
    thread = threading.Thread(target=server._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._server.shutdown()
        server._server.server_close()
        thread.join(timeout=5)


def quote(bid: Any, ask: Any, **extra: Any) -> dict[str, Any]:
    """One latest quote as the data API sends it (short field names)."""
    body = {"ap": ask, "as": 1, "ax": "V", "bp": bid, "bs": 1, "bx": "V", "c": ["R"], "t": "2026-11-24T15:00:00Z"}
    body["z"] = "A"
    body.update(extra)
    return body


def order(client_order_id: str, symbol: str, **fields: Any) -> dict[str, Any]:
    """A filled market sell as the trading API sends it; `fields` override or (value None) remove keys."""
    body: dict[str, Any] = {
        "id": "0b1c2d3e-0000-4000-8000-000000000001",
        "client_order_id": client_order_id,
        "created_at": "2026-11-24T15:00:00.000000Z",
        "updated_at": "2026-11-24T15:00:00.100000Z",
        "submitted_at": "2026-11-24T15:00:00.000000Z",
        "filled_at": "2026-11-24T15:00:00.100000Z",
        "expired_at": None,
        "canceled_at": None,
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": "0b1c2d3e-0000-4000-8000-0000000000aa",
        "symbol": symbol,
        "asset_class": "us_equity",
        "notional": None,
        "qty": "4",
        "filled_qty": "4",
        "filled_avg_price": "10.5",
        "order_class": "",
        "order_type": "market",
        "type": "market",
        "side": "sell",
        "time_in_force": "day",
        "limit_price": None,
        "stop_price": None,
        "status": "filled",
        "extended_hours": False,
        "legs": None,
    }
    for key, value in fields.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body
