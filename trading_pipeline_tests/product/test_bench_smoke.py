"""The benches keep working: the sweep bench at a tiny size (no timing assertions — only what it counts)."""

from __future__ import annotations

import io
from decimal import Decimal

from bench import reaction, sweep
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols


def test_sweep_bench_runs_at_tiny_size_and_counts_what_it_claims() -> None:
    out = io.StringIO()
    report = sweep.main(
        [
            "--sizes", "20:10",
            "--latency-ms", "0",
            "--exit-fraction", "0.1",
            "--baseline-sample", "10",
            "--backends", "sqlite",
            "--dagster-size", "4:2",
            "--dagster-runs", "1",
        ],
        out=out,
    )  # fmt: skip
    [case] = report["cases"]
    by_variant = {m["variant"]: m for m in case["measurements"]}
    assert set(by_variant) == {"ours", "ours-seq", "naive"}
    for name in ("ours", "ours-seq"):
        m = by_variant[name]
        assert m["quote_requests"] == 1  # 10 unique symbols, one multi-symbol request
        assert m["orders_submitted"] == 2 == m["closed"]  # every 10th of 20 positions is beyond its stop
        assert m["checkouts_during_broker_calls"] == 0
    naive = by_variant["naive"]
    assert naive["extrapolated"] and naive["measured_positions"] == 10
    assert naive["quote_requests"] == 20  # one request per position, 10 measured ×2
    assert naive["checkouts_during_broker_calls"] > 0  # the seed's shape holds the connection: it is caught
    [dagster] = report["dagster"]
    assert dagster["positions"] == 4 and dagster["dagster_run_median_s"] > 0
    text = out.getvalue()
    assert "## 20 positions / 10 symbols — sqlite" in text and "naive/ours: wall ×" in text
    assert "closes: 2 orders, the last answered" in text  # concurrent vs one after another, same run
    assert "measured on 10 of 20 positions" in text


def test_reaction_bench_stamps_orders_as_they_reach_the_broker() -> None:
    args = reaction.build_parser().parse_args([])
    assert args.repetitions >= 5 and args.path == "both" and args.phase_spread is None  # spread = the cadence
    with running_sim(realtime=False) as sim:
        stamps = reaction.OrderStamps(sim)
        symbol = tradable_symbols(sim.market, 1)[0]
        for side in ("buy", "sell"):
            sim.market.submit_order(
                {"symbol": symbol, "qty": "1", "side": side, "type": "market", "time_in_force": "day"}
            )
        assert stamps.first_sell_after(symbol, 0) is not None
        assert stamps.first_sell_after(symbol, 2e9) is None
    rows = [reaction.Reaction(n, "AAA", "stop_trigger", n, 1.0, 0.5, n + 1.5, "r") for n in (1, 2, 9)]
    rows += [reaction.Reaction(n, "BBB", "schedule", 60 + n, 2.0, 0.5, 62.5 + n, "s", "schedule") for n in (1, 3)]
    lines = reaction.summary(rows).splitlines()
    assert lines[0].startswith("sensor path")
    assert lines[1].split() == ["detection", "median", "2.00", "s", "max", "9.00", "s"]
    assert lines[4].split()[:4] == ["after", "trigger", "median", "1.50"]
    assert Decimal(lines[5].split()[2]) == Decimal("3.50") and lines[6].endswith(": met")
    assert lines[7].startswith("schedule path") and lines[-1].endswith(": not met")  # 64.5 s median
