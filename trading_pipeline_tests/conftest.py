"""Shared fixtures: the trading DB on SQLite and on a real PostgreSQL.

PostgreSQL tests run against TEST_DATABASE_URL (a server the tests may create databases on). Without it
they are skipped with the reason printed — unless TRADING_PIPELINE_REQUIRE_POSTGRES=1 (CI), where a
missing or unreachable Postgres fails the run instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade
from trading_pipeline.store.models import Base

REQUIRE_POSTGRES = os.environ.get("TRADING_PIPELINE_REQUIRE_POSTGRES") == "1"
# Alert channels a developer configured for real must never be paged by a test; tests that need a channel
# set one (a receiver on 127.0.0.1) themselves.
ALERT_CHANNEL_VARIABLES = (
    "TRADING_PIPELINE_ALERT_WEBHOOK_URL",
    "TRADING_PIPELINE_SLACK_TOKEN",
    "TRADING_PIPELINE_SLACK_CHANNEL",
    "TRADING_PIPELINE_APPRISE_URLS",
)


@pytest.fixture(autouse=True, scope="session")
def alerts_to_the_log_only() -> Iterator[None]:
    """Tests accept alerts reaching only the log and the alerts table (TRADING_PIPELINE_ALERTS=log-only), as
    the demo does; a test of the NO-GO without a channel passes its own environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ALERT_CHANNEL_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("TRADING_PIPELINE_ALERTS", "log-only")
        yield


def _postgres_unavailable(reason: str) -> None:
    if REQUIRE_POSTGRES:
        pytest.fail(f"PostgreSQL required (TRADING_PIPELINE_REQUIRE_POSTGRES=1) but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason} (set TEST_DATABASE_URL to run them)")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh, migrated database on the test server for this test session; dropped at the end."""
    raw = os.environ.get("TEST_DATABASE_URL")
    if not raw:
        _postgres_unavailable("TEST_DATABASE_URL is not set")
    base = make_url(raw).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"tp_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _postgres_unavailable(f"cannot connect to {base.render_as_string(hide_password=True)}: {exc.orig}")
    url = base.set(database=name).render_as_string(hide_password=False)
    with Database(url) as db:
        upgrade(db)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty trading DB URL on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'trading.db'}"
        with Database(url) as db:
            upgrade(db)
        return url
    url = request.getfixturevalue("postgres_server_url")
    _truncate_all(url)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    with Database(database_url) as database:
        yield database


def _truncate_all(url: str) -> None:
    with Database(url) as database, database.engine.begin() as conn:
        names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[_POSTGRES_COLLECTED] = sum(1 for item in items if item.get_closest_marker("postgres"))


_POSTGRES_COLLECTED = pytest.StashKey[int]()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "postgres" in report.keywords:
        _passed_counter[0] += 1


_passed_counter = [0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With Postgres required, a run in which no Postgres test passed is a failure, not a green build."""
    collected = session.config.stash.get(_POSTGRES_COLLECTED, 0)
    if REQUIRE_POSTGRES and collected and _passed_counter[0] == 0 and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nTRADING_PIPELINE_REQUIRE_POSTGRES=1 but no PostgreSQL test passed", flush=True)
