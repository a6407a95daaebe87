"""The outcome checks' work is flat through the day: run 6 issues the same statements as run 2."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from trading_pipeline.assets import closes as closes_asset
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.store import outcome_aggregates_repository as outcome_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import check_results, pipeline_definitions, run_job, seed_positions
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=400) as simulator:
        yield simulator


def test_outcome_checks_read_the_same_after_one_run_as_after_many(
    database_url: str, db: Database, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_positions(db, sim, tradable_symbols(sim.market, 12), stop_pct="50")  # no stop crosses all day
    work: list[tuple[int, int, int]] = []  # per run: statements, bound parameters, statements on `quotes`
    original = closes_asset.outcome_check_results

    def counted(instance, trading_db, **kwargs):
        seen = {"statements": 0, "params": 0, "quotes": 0}

        def count(conn, cursor, statement, params, context, many):
            seen["statements"] += 1
            rows = params if many else [params]
            seen["params"] += sum(len(row or ()) for row in rows)
            seen["quotes"] += " quotes" in statement.lower()

        sa.event.listen(trading_db.engine, "before_cursor_execute", count)
        try:
            return original(instance, trading_db, **kwargs)
        finally:
            sa.event.remove(trading_db.engine, "before_cursor_execute", count)
            work.append((seen["statements"], seen["params"], seen["quotes"]))

    monkeypatch.setattr(closes_asset, "outcome_check_results", counted)
    defs = pipeline_definitions(database_url, sim)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(6):
        result = run_job(defs, STOP_LOSS_JOB, instance=instance)
        assert result.success and check_results(result)["stops_honoured"]
        sim.market.advance(timedelta(minutes=2))
    assert work[1] == work[-1], work  # the replay read every earlier run's quotes: its IN list grew each run
    assert work[-1][2] == 0  # no earlier run's quotes are read at all
    day = outcome_repo.read_day(db, sim.market.now.date())
    assert day.runs_applied == 6 and day.crosses == ()
