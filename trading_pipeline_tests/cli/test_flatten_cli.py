"""`trading-pipeline flatten`: the table a person sees, the exit code, and one clear line for bad input."""

from __future__ import annotations

import pytest

from trading_pipeline.cli.main import main
from trading_pipeline.store.alerts_repository import current_trading_state
from trading_pipeline.store.database import Database
from trading_pipeline_tests.sim_fixtures import running_sim
from trading_pipeline_tests.steps.test_flatten import AFTER_THE_CLOSE, OUTSIDE_LIMIT, book


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


@pytest.fixture
def cli(database_url: str, sim, monkeypatch, capsys):
    if not database_url.startswith("sqlite"):
        pytest.skip("the CLI's behaviour does not depend on the backend; the step's tests cover both")
    for name in ("TRADING_MODE", "TRADING_PIPELINE_DATA_DIR", "TRADING_PIPELINE_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TRADING_PIPELINE_BROKER", "sim")
    monkeypatch.setenv("ALPACA_TRADING_URL", sim.url)
    monkeypatch.setenv("ALPACA_DATA_URL", sim.url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["flatten", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_flatten_prints_what_was_closed_and_exits_0(cli, db: Database, sim) -> None:
    trades, outside = book(db, sim)
    code, out, err = cli("--reason", "drill", "--actor", "ops")
    assert code == 0, out + err
    assert out.startswith("HALTED: no new entries (by ops at ")
    header = next(line for line in out.splitlines() if line.startswith("SYMBOL"))
    assert header.split() == ["SYMBOL", "HELD", "WHOSE", "OUTCOME", "DETAIL"]
    for symbol in [t.symbol for t in trades]:
        assert any(line.startswith(symbol) and "pipeline" in line and "CLOSED" in line for line in out.splitlines())
    assert any(line.startswith(outside) and "outside" in line and "CLOSED" in line for line in out.splitlines())
    assert f"outside the pipeline: sell 7 {outside} limit" in out and OUTSIDE_LIMIT in out
    assert "OK: 3 closing order(s) sent" in out
    assert sim.market.book.positions == {}


def test_after_the_close_it_says_queued_not_closed(cli, db: Database, sim) -> None:
    book(db, sim)
    sim.market.advance_to(AFTER_THE_CLOSE)
    code, out, _ = cli("--reason", "weekend risk")
    assert code == 0
    assert "The market is CLOSED" in out and "CLOSED " not in out.split("\n\n", 1)[1]
    queued = [line for line in out.splitlines() if " QUEUED " in line]
    assert len(queued) == 3 and all("queued for the next open at 2026-11-25 09:30 ET" in line for line in queued)


def test_a_refusal_exits_1_with_the_brokers_words(cli, db: Database, sim) -> None:
    trades, _ = book(db, sim)
    sim.market.set_tradable(trades[0].symbol, False)  # refused: not tradable
    code, out, _ = cli("--reason", "drill")
    assert code == 1
    refused = next(line for line in out.splitlines() if line.startswith(trades[0].symbol))
    assert "REFUSED" in refused and "rejected by broker" in refused
    assert "NOT FLAT: 1 refused" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--reason", " "), "a reason is required"),
        (("--reason", "typo", "--symbol", "ZZZZ"), "ZZZZ: the broker holds no such position"),
        (("--reason", "typo", "--symbol", "A B"), "not a symbol: 'A B'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_done(cli, db: Database, sim, argv, message) -> None:
    book(db, sim)
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not current_trading_state(db).halted and len(sim.market.book.positions) == 3


def test_no_reason_at_all_is_a_usage_error(cli) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli("--symbol", "AAPL")
    assert exit_.value.code == 2


def test_an_unreachable_broker_says_what_to_do(cli, db: Database, monkeypatch) -> None:
    monkeypatch.setenv("ALPACA_TRADING_URL", "http://127.0.0.1:9")
    code, out, err = cli("--reason", "incident")
    assert code == 2 and out == "" and "Traceback" not in err
    assert "the broker could not be read" in err and "Entries ARE halted" in err and "preflight" in err
    assert current_trading_state(db).halted
