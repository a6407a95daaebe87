"""The trading database handle: one engine per run, instrumented, disposed at the end.

There is no module-level engine anywhere: a `Database` is created when a run (or CLI command) starts
and disposed when it ends. The seed app's global async engine was bound to the first event loop and
failed every later run with "Future attached to a different loop"; a per-run engine cannot.

`DatabaseMonitor` records what the product promises about the database: the longest transaction,
slow statements, pool checkouts, and — the seed's worst failure — connections held by a thread while
that thread waits on the broker.
"""

from __future__ import annotations

import gc
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from trading_pipeline.store.read_cache import ReadCache

SLOW_STATEMENT_SECONDS = 1.0
_WRITE_TARGET = re.compile(r'^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)', re.IGNORECASE)


class DatabaseError(Exception):
    """A database problem stated in one line with its fix."""


class DatabaseConfigError(DatabaseError):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    transactions: int
    longest_transaction_ms: float
    statements: int
    slow_statements: int
    checkouts: int
    peak_checked_out: int
    checkouts_during_broker_calls: int
    longest_transaction_statement: str = ""  # the longest transaction's first statement, cut: where to look


def statement_label(statement: str, limit: int = 100) -> str:
    """One line of SQL, a SELECT's column list elided, cut, for naming a transaction (never parameters: they
    can hold data)."""
    text = " ".join(statement.split())
    head, sep, rest = text.partition(" FROM ")
    if head.upper().startswith("SELECT ") and sep:
        text = f"SELECT … FROM {rest}"
    return text[:limit]


class DatabaseMonitor:
    """Counts pool checkouts, transaction lengths and connections held across broker calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # thread id → connections it has checked out
        self._in_broker_call: dict[int, int] = {}  # thread id → broker calls in flight
        self._tx_started: dict[int, float] = {}  # id(connection) → start time
        self._tx_first: dict[int, str] = {}  # id(connection) → the open transaction's first statement
        self._writes: dict[str, int] = {}  # table → writes through this engine (statements and their commits)
        self._tx_written: dict[int, set[str]] = {}  # id(connection) → tables the open transaction wrote
        self.reset()

    def writes(self, table: str) -> int:
        """A generation number for `table`: it moves whenever a statement through this engine writes the
        table, and again when that statement's transaction ends (so a read that began while the write was
        not yet committed is never taken for one that saw it). Never reset."""
        with self._lock:
            return self._writes.get(table, 0)

    def reset(self) -> None:
        with self._lock:
            self.transactions = 0
            self.longest_transaction_ms = 0.0
            self.longest_transaction_statement = ""
            self.statements = 0
            self.slow_statements = 0
            self.checkouts = 0
            self.checked_out = 0
            self.peak_checked_out = 0
            self.checkouts_during_broker_calls = 0

    def stats(self) -> DatabaseStats:
        with self._lock:
            return DatabaseStats(
                transactions=self.transactions,
                longest_transaction_ms=round(self.longest_transaction_ms, 3),
                statements=self.statements,
                slow_statements=self.slow_statements,
                checkouts=self.checkouts,
                peak_checked_out=self.peak_checked_out,
                checkouts_during_broker_calls=self.checkouts_during_broker_calls,
                longest_transaction_statement=self.longest_transaction_statement,
            )

    @contextmanager
    def broker_call(self) -> Iterator[None]:
        """Wrap every broker call: a connection held by this thread now is a violation."""
        me = threading.get_ident()
        with self._lock:
            if self._held.get(me, 0) > 0:
                self.checkouts_during_broker_calls += self._held[me]
            self._in_broker_call[me] = self._in_broker_call.get(me, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_broker_call[me] -= 1
                if not self._in_broker_call[me]:
                    del self._in_broker_call[me]

    # -- engine events -------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)
        event.listen(engine, "begin", self._on_begin)
        event.listen(engine, "commit", self._on_end)
        event.listen(engine, "rollback", self._on_end)
        event.listen(engine, "before_cursor_execute", self._before_execute)
        event.listen(engine, "after_cursor_execute", self._after_execute)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        me = threading.get_ident()
        record.info["monitor_thread"] = me
        with self._lock:
            self.checkouts += 1
            self.checked_out += 1
            self.peak_checked_out = max(self.peak_checked_out, self.checked_out)
            self._held[me] = self._held.get(me, 0) + 1
            if self._in_broker_call.get(me):
                self.checkouts_during_broker_calls += 1

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        owner = record.info.pop("monitor_thread", None)
        with self._lock:
            self.checked_out = max(0, self.checked_out - 1)
            if owner is not None and self._held.get(owner):
                self._held[owner] -= 1
                if not self._held[owner]:
                    del self._held[owner]

    def _on_begin(self, conn: sa.Connection) -> None:
        with self._lock:
            self._tx_started[id(conn)] = time.perf_counter()

    def _on_end(self, conn: sa.Connection) -> None:
        now = time.perf_counter()
        with self._lock:  # not conn.info: an invalidated connection (killed mid-transaction) raises on it
            for table in self._tx_written.pop(id(conn), ()):
                self._writes[table] = self._writes.get(table, 0) + 1
            started = self._tx_started.pop(id(conn), None)
            first = self._tx_first.pop(id(conn), "")
            if started is not None:
                self.transactions += 1
                elapsed_ms = (now - started) * 1000
                if elapsed_ms > self.longest_transaction_ms:
                    self.longest_transaction_ms = elapsed_ms
                    self.longest_transaction_statement = first

    def _before_execute(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        conn.info.setdefault("statement_started", []).append(time.perf_counter())
        target = _WRITE_TARGET.match(statement)
        if target is not None:
            table = target.group(1).lower()
            with self._lock:
                self._tx_written.setdefault(id(conn), set()).add(table)
                self._writes[table] = self._writes.get(table, 0) + 1
        key = id(conn)
        if key in self._tx_started and key not in self._tx_first:
            self._tx_first[key] = statement_label(statement)

    def _after_execute(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        started = conn.info["statement_started"].pop()
        with self._lock:
            self.statements += 1
            if time.perf_counter() - started > SLOW_STATEMENT_SECONDS:
                self.slow_statements += 1


def parse_database_url(url: str) -> URL:
    """Parse and check a DATABASE_URL, or raise DatabaseConfigError saying what a good one looks like."""
    example = "sqlite:///data/trading.db or postgresql+psycopg://user@127.0.0.1:5432/trading"
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The value is not echoed: an unparseable URL cannot be redacted and may hold a password.
        raise DatabaseConfigError(
            f"DATABASE_URL is not a database URL (value hidden, it may hold a password); expected e.g. {example}"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseConfigError(
            f"DATABASE_URL uses {parsed.get_backend_name()!r}; supported are sqlite and postgresql, e.g. {example}"
        )
    if parsed.get_backend_name() == "postgresql":
        if "+" not in parsed.drivername:  # plain postgresql:// → the driver we ship (psycopg 3)
            return parsed.set(drivername="postgresql+psycopg")
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            raise DatabaseConfigError(
                f"DATABASE_URL driver {parsed.drivername!r} is not supported; use postgresql+psycopg://…"
            )
    return parsed


def redact(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


class Database:
    """An engine + session factory + monitor for one run; call `dispose()` (or use `with`) at the end."""

    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 5, pool_timeout: float = 10.0) -> None:
        self.url = parse_database_url(url)
        self.monitor = DatabaseMonitor()
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
            kwargs["connect_args"] = {"connect_timeout": 5}
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise DatabaseConfigError(f"cannot use DATABASE_URL {redact(self.url)}: {exc}") from None
        # SQLite admits one writer; a second one sleeps in its busy handler's back-off (1, 2, 5, 10 … ms) inside
        # its transaction. Threads of this process (the concurrent closes) take turns here instead, before BEGIN,
        # and wake as soon as the other commits; other processes still meet SQLite's own locking.
        self._turns: threading.RLock | None = None
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self._turns = threading.RLock()
        self.monitor.attach(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.reads = ReadCache(self.monitor)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One short transaction: commit on success, roll back on error, connection returned at once.

        Python's cyclic garbage collector is held off for its duration: a full collection over a large heap
        (10,000 open trades) takes ~90 ms and otherwise lands inside whichever transaction is open. On SQLite the
        process's threads open their transactions one at a time (see `__init__`)."""
        with self._turns or nullcontext(), _gc_held_off(), self._sessions() as session, session.begin():
            yield session

    def check_connection(self) -> None:
        """Connect once, or raise DatabaseUnavailable with the reason and the URL (password hidden)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseUnavailable(
                f"cannot connect to the trading DB at {redact(self.url)}: {reason} — is the server running "
                "and DATABASE_URL right?"
            ) from None

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


_gc_lock = threading.Lock()
_frozen_in: int | None = None  # the process id that froze its loaded objects


def freeze_loaded_objects() -> bool:
    """Once per process, before its first run's work: move every object alive now (Dagster, pandas, the
    definitions) into the collector's permanent generation, so a full collection scans only what runs made.
    Without it one stop-loss run in ~13 paid a full collection of the whole heap inside its checks (0.2 s at
    2,000 positions; bench/RESULTS.md). What is frozen is never collected; it lives as long as the process
    anyway. True when this call froze."""
    global _frozen_in
    with _gc_lock:
        if _frozen_in == os.getpid():  # a forked child (multiprocess executor) freezes what it loaded itself
            return False
        _frozen_in = os.getpid()
        gc.freeze()
        return True


_gc_holders = 0
_gc_was_enabled = False


@contextmanager
def _gc_held_off() -> Iterator[None]:
    """Disable automatic GC while any thread is inside a transaction; restore the previous state after."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets `dagster dev` and `status` read while a run writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
