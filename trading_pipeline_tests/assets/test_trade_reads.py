"""A stop-loss run reads its open trades once per step when no trade changed (store/read_cache.py), and again
after a step changed one: the checks judge the trades as they are after the sweep, not as it found them."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import check_results, pipeline_definitions, run_job, seed_positions
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols

STEPS = 3  # quotes, positions, closes: each reads the open trades itself, so nothing upstream blocks a close


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=400) as simulator:
        yield simulator


def whole_open_reads(run: callable) -> tuple[int, object]:
    """Runs `run()` and counts the first pages of whole reads of the open trades (later pages and reads of
    some symbols only are not counted), on every engine of the process."""
    seen = [0]

    def count(conn, cursor, statement, params, context, many):
        text = " ".join(statement.split())
        whole = "FROM trades WHERE trades.status = " in text and " IN (" not in text and ") > (" not in text
        values = params.values() if isinstance(params, dict) else (params or ())  # psycopg's are named
        if whole and not many and "OPEN" in [str(p) for p in values]:
            seen[0] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        result = run()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    return seen[0], result


def test_a_quiet_run_reads_the_open_trades_once_per_step_and_a_run_that_closes_reads_after(
    database_url: str, db: Database, sim
) -> None:
    symbols = tradable_symbols(sim.market, 12)
    seed_positions(db, sim, symbols, stop_pct="50")  # no stop crosses
    defs = pipeline_definitions(database_url, sim)
    instance = dg.DagsterInstance.ephemeral()
    reads, result = whole_open_reads(lambda: run_job(defs, STOP_LOSS_JOB, instance=instance))
    assert result.success
    assert reads == STEPS + 1, reads  # the session's first run also reads them for its corporate actions

    sim.market.advance(timedelta(minutes=2))
    reads, result = whole_open_reads(lambda: run_job(defs, STOP_LOSS_JOB, instance=instance))
    assert result.success and check_results(result)["no_position_beyond_stop"]
    assert reads == STEPS, reads

    sim.market.advance(timedelta(minutes=2))
    sim.market.gap(symbols[0], -60)  # through its 50 % stop: the sweep closes it
    reads, result = whole_open_reads(lambda: run_job(defs, STOP_LOSS_JOB, instance=instance))
    assert result.success
    checks = check_results(result)
    assert checks["no_position_beyond_stop"] and checks["stops_honoured"]
    assert reads > STEPS, reads  # the sweep's close changed a trade: what followed it read them again
