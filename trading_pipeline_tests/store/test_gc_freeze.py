"""A run's full garbage collections scan what runs made, not what the process loaded (store/database.py)."""

from __future__ import annotations

import gc
import os

import dagster as dg
import pytest

from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.store import database


def test_a_run_s_database_resource_freezes_what_the_process_loaded_once_per_process(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "_frozen_in", None)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    resource = TradingDatabase(url=database_url)
    resource.setup_for_execution(dg.build_init_resource_context())
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # Dagster, SQLAlchemy, pandas and the test session's objects
        resource.teardown_after_execution(dg.build_init_resource_context())
        made_since = [[] for _ in range(1000)]  # tracked objects a second freeze would take in
        resource.setup_for_execution(dg.build_init_resource_context())  # the next run in this process
        assert gc.get_freeze_count() <= frozen and made_since  # (frozen objects freed by refcount leave it)
        monkeypatch.setattr(os, "getpid", lambda: -1)  # a forked child freezes what it loaded itself
        assert database.freeze_loaded_objects() is True
    finally:
        resource.teardown_after_execution(dg.build_init_resource_context())
