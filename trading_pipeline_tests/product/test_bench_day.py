"""`python -m bench.day` at a small size: the JSON shape, and figures that agree with each other."""

from __future__ import annotations

import contextlib
import io
import json

from bench import day


def test_bench_day_prints_first_and_last_run_figures() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert day.main(["--positions", "50", "--runs", "3", "--latency-ms", "0", "--json"]) == 0
    result = json.loads(out.getvalue())
    assert set(result) == {"first", "last"}
    for run in result.values():
        assert set(run) == {
            "check_s",
            "longest_txn_ms",
            "broker_requests",
            "floor_requests",
            "session_requests",
            "wall_s",
            "last_close_s",
            "rate_limited",
        }
        assert run["rate_limited"] == 0  # the sim enforces Alpaca's 200/min; our pacing keeps inside it
        assert run["broker_requests"] >= run["floor_requests"] >= 4  # clock, positions, orders, ≥ 1 quote request
        assert 0 < run["check_s"] < run["wall_s"] and 0 < run["longest_txn_ms"] < run["wall_s"] * 1000
    # 50 positions over 10 symbols, 1 in 100 beyond its stop: run 1 closes it (floor + its order and a listing).
    assert result["first"]["floor_requests"] == day.floor_requests(10, 1) == 6
    assert result["last"]["floor_requests"] == day.floor_requests(10, 0) == 4
    # The session's first run reads the held symbols' corporate actions (no pre-flight ran); a later run without
    # a close makes exactly the floor's requests: clock, positions, open orders, one quote request.
    assert (result["first"]["session_requests"], result["last"]["session_requests"]) == (1, 0)
    assert result["last"]["broker_requests"] == result["last"]["floor_requests"]
    assert 0 < result["first"]["last_close_s"] < result["first"]["wall_s"] and result["last"]["last_close_s"] == 0
