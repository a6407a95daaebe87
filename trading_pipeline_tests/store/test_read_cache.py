"""A kept read is reused only while it is what a new read would return (store/read_cache.py)."""

from __future__ import annotations

import sqlalchemy as sa

from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.read_cache import ReadCache
from trading_pipeline_tests.store.test_repositories import new_trade


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loads:
    """A load that counts its calls and returns what the table holds now."""

    def __init__(self, db: Database) -> None:
        self.db, self.calls = db, 0

    def __call__(self) -> list[str]:
        self.calls += 1
        return sorted(t.symbol for t in trades_repo.open_trades(self.db))


def test_a_read_is_reused_until_a_write_through_the_engine(db: Database) -> None:
    cache, load = ReadCache(db.monitor, clock=FakeClock()), Loads(db)
    trades_repo.insert_trade(db, new_trade("AAA"))
    assert cache.read("open", "trades", load, reuse=True) == ["AAA"]
    assert cache.read("open", "trades", load, reuse=True) == ["AAA"]
    assert load.calls == 1 and cache.hits == 1

    trades_repo.insert_trade(db, new_trade("BBB"))
    assert cache.read("open", "trades", load, reuse=True) == ["AAA", "BBB"]
    assert load.calls == 2


def test_a_write_to_another_table_keeps_the_read(db: Database) -> None:
    cache, load = ReadCache(db.monitor, clock=FakeClock()), Loads(db)
    cache.read("open", "trades", load, reuse=True)
    with db.transaction() as session:
        session.execute(sa.text("DELETE FROM alerts"))
    cache.read("open", "trades", load, reuse=True)
    assert load.calls == 1


def test_reuse_false_always_reads(db: Database) -> None:
    cache, load = ReadCache(db.monitor, clock=FakeClock()), Loads(db)
    for _ in range(3):
        cache.read("open", "trades", load, reuse=False)
    assert load.calls == 3 and cache.hits == 0


def test_a_read_taken_while_a_write_was_uncommitted_is_not_reused_after_the_commit(db: Database) -> None:
    """The write's statement ran before the read, its commit after: the read may not have seen it."""
    trades_repo.insert_trade(db, new_trade("AAA"))
    cache, load = ReadCache(db.monitor, clock=FakeClock()), Loads(db)
    with db.engine.connect() as writer:
        writer.execute(sa.text("UPDATE trades SET symbol = 'ZZZ'"))
        during = cache.read("open", "trades", lambda: ["as read during the write"], reuse=True)
        assert cache.read("open", "trades", load, reuse=True) is during  # nothing has ended since
        writer.commit()
    assert cache.read("open", "trades", load, reuse=True) == ["ZZZ"]
    assert load.calls == 1


def test_another_process_s_write_is_seen_within_max_age(database_url: str, db: Database) -> None:
    clock = FakeClock()
    cache, load = ReadCache(db.monitor, max_age=5.0, clock=clock), Loads(db)
    assert cache.read("open", "trades", load, reuse=True) == []
    with Database(database_url) as other:  # its own engine: this monitor never sees its statements
        trades_repo.insert_trade(other, new_trade("AAA"))
    clock.now += 5.0
    assert cache.read("open", "trades", load, reuse=True) == []  # as stale as a read 5 s ago, no more
    clock.now += 0.01
    assert cache.read("open", "trades", load, reuse=True) == ["AAA"]


def test_trades_with_status_hands_out_copies(db: Database) -> None:
    trades_repo.insert_trade(db, new_trade("AAA"))
    first = trades_repo.open_trades(db, reuse=True)
    first.clear()
    assert [t.symbol for t in trades_repo.open_trades(db, reuse=True)] == ["AAA"]
    assert db.reads.hits == 1
