"""Detection drill: inject each production failure, one at a time, and time the first alert a person receives.

    python -m bench.drill                          # every mode, then 30 minutes healthy (about an hour)
    python -m bench.drill --mode daemon-killed --json
    python -m bench.drill --mode healthy --healthy-minutes 3

Runs on the production topology started on this machine (bench/drill_topology.py): dagster-daemon, the
webserver, the code location over gRPC, dagster-postgres storage and a PostgreSQL trading DB (databases of
its own, dropped at the end), the sim broker (its session open now) behind a proxy that can misbehave on the
wire, the watchdog every 30 s, and a local webhook receiver. `alert_after_s` is from the injection to the
first alert at the webhook whose key was not already firing; `false_alerts` counts every alert during the
healthy window, where nothing is injected. Goal: every mode within 180 s (daemon death within 120 s), 0 false
alerts over 30 healthy minutes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bench.drill_topology import Topology

MODES = [
    "stop-loss-failing",
    "schedules-stopped",
    "daemon-killed",
    "sensor-erroring",
    "broker-auth-revoked",
    "quotes-frozen",
    "kill-switch-left-on",
    "db-behind-migration",
    "exits-not-filling",
    "location-load-failure",
]
LIMITS = {"daemon-killed": 120.0}
DEFAULT_LIMIT = 180.0
WAIT_FOR_ALERT = 420.0  # give up on a mode after this long (it then counts as missed: null)
SETTLE = 150.0  # after reverting, time for recoveries before the next injection


@dataclass
class ModeResult:
    mode: str
    alert_after_s: float | None
    alert_text: str | None
    limit_s: float

    @property
    def ok(self) -> bool:
        return self.alert_after_s is not None and self.alert_after_s <= self.limit_s


class Drill:
    def __init__(self, topology: Topology, say: Callable[[str], None], settle_seconds: float = SETTLE) -> None:
        self.t = topology
        self.settle_seconds = settle_seconds
        self.say = say
        self._saved: dict[str, object] = {}

    # ---- Dagster state the UI would change ----

    def _states(self, kind: str) -> list:  # type: ignore[type-arg]
        import dagster as dg
        from dagster._core.scheduler.instigation import InstigatorType

        with dg.DagsterInstance.get() as instance:
            return [s for s in instance.all_instigator_state() if s.instigator_type == InstigatorType(kind)]

    def _update(self, state) -> None:  # type: ignore[no-untyped-def]
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            instance.update_instigator_state(state)

    # ---- the modes: (inject, revert) ----

    def inject(self, mode: str) -> None:
        from trading_pipeline.store import alerts_repository as alerts_repo
        from trading_pipeline.store.database import Database

        if mode == "stop-loss-failing":
            self.t.proxy.set_mode("positions_500")  # every stop-loss run fails at its positions step
        elif mode == "broker-auth-revoked":
            self.t.proxy.set_mode("auth")
        elif mode == "quotes-frozen":
            self.t.proxy.set_mode("quotes_frozen")
        elif mode == "exits-not-filling":
            self.t.proxy.set_mode("exits_unfilled")
            self._gap_a_position()
        elif mode == "schedules-stopped":
            from dagster._core.scheduler.instigation import InstigatorStatus

            states = self._states("SCHEDULE")
            self._saved["schedules"] = states
            for state in states:
                self._update(state.with_status(InstigatorStatus.STOPPED))  # what the UI's toggle stores
        elif mode == "daemon-killed":
            self.t.stop("daemon", signal.SIGKILL)
        elif mode == "sensor-erroring":
            state = next(s for s in self._states("SENSOR") if s.name == "asset_check_alert_sensor")
            self._saved["sensor"] = state
            data = state.instigator_data
            self._update(state.with_data(data._replace(cursor="{corrupted")))  # an unreadable cursor
        elif mode == "kill-switch-left-on":
            with Database(self.t.trading_url) as db:
                alerts_repo.set_trading_state(db, halted=True, actor="drill", reason="left on after maintenance")
        elif mode == "db-behind-migration":
            from alembic import command

            from trading_pipeline.store.migrate import _config

            config = _config()
            with Database(self.t.trading_url) as db, db.engine.connect() as conn:
                config.attributes["connection"] = conn  # how store.migrate runs alembic (env.py reads it)
                command.downgrade(config, "-1")
                conn.commit()
        elif mode == "location-load-failure":
            self.t.stop("code-server")
            self.t.start_code_server(TRADING_MODE="live")  # live without the opt-in: the location refuses to load
        elif mode != "healthy":
            raise ValueError(f"unknown mode {mode!r}; modes: healthy, {', '.join(MODES)}")

    def revert(self, mode: str) -> None:
        from trading_pipeline.store import alerts_repository as alerts_repo
        from trading_pipeline.store.database import Database
        from trading_pipeline.store.migrate import upgrade

        if mode in ("stop-loss-failing", "broker-auth-revoked", "quotes-frozen"):
            self.t.proxy.set_mode("")
        elif mode == "exits-not-filling":
            self.t.proxy.set_mode("")
            self._cancel_open_sells()  # the next run releases the claim and sells at market
        elif mode == "schedules-stopped":
            for state in self._saved.pop("schedules", []):  # type: ignore[attr-defined]
                self._update(state)
        elif mode == "daemon-killed":
            self.t.start_daemon()
        elif mode == "sensor-erroring":
            self._update(self._saved.pop("sensor"))
        elif mode == "kill-switch-left-on":
            with Database(self.t.trading_url) as db:
                alerts_repo.set_trading_state(db, halted=False, actor="drill", reason="maintenance over")
        elif mode == "db-behind-migration":
            with Database(self.t.trading_url) as db:
                upgrade(db)
        elif mode == "location-load-failure":
            self.t.stop("code-server")
            self.t.start_code_server()
            self.t.wait_for_code_server()

    def _gap_a_position(self) -> None:
        from trading_pipeline.store import trades_repository as trades_repo
        from trading_pipeline.store.database import Database

        with Database(self.t.trading_url) as db:
            trades = trades_repo.open_trades(db)
        if trades:
            self.t.sim.market.gap(sorted(t.symbol for t in trades)[0], -15)

    def _cancel_open_sells(self) -> None:
        from trading_pipeline.broker.alpaca import AlpacaBroker

        broker = AlpacaBroker("drill", "drill", trading_url=self.t.sim.url, data_url=self.t.sim.url, timeout=10)
        for order in broker.open_orders():
            if order.side.value == "sell":
                broker.cancel_order(order.id)
        broker.close()

    # ---- measuring ----

    def measure(self, mode: str) -> ModeResult:
        limit = LIMITS.get(mode, DEFAULT_LIMIT)
        already = self.t.receiver.firing_keys()
        started = time.time()
        self.say(f"drill: {mode}: injecting at {datetime.now(UTC):%H:%M:%S} UTC")
        self.inject(mode)
        found: tuple[float, dict] | None = None  # type: ignore[type-arg]
        while time.time() - started < WAIT_FOR_ALERT and found is None:
            time.sleep(2)
            for at, payload in self.t.receiver.since(started):
                if payload.get("state") == "firing" and payload.get("key") not in already:
                    found = (at, payload)
                    break
        self.revert(mode)
        if found is None:
            self.say(f"drill: {mode}: NO alert within {WAIT_FOR_ALERT:.0f} s")
            result = ModeResult(mode, None, None, limit)
        else:
            at, payload = found
            text = f"[{payload.get('severity', '').upper()}] {payload.get('title')} — {payload.get('message')}"
            result = ModeResult(mode, round(at - started, 1), text, limit)
            self.say(f"drill: {mode}: alerted after {result.alert_after_s:.0f} s: {text[:160]}")
        self.settle()
        return result

    def settle(self) -> None:
        """Let the recoveries arrive (and the daemon come back) before the next injection."""
        deadline = time.time() + self.settle_seconds
        while time.time() < deadline:
            time.sleep(5)

    def healthy(self, minutes: float) -> int:
        started = time.time()
        self.say(f"drill: healthy: watching for {minutes:g} minutes with nothing injected")
        time.sleep(minutes * 60)
        fired = [p for _, p in self.t.receiver.since(started) if p.get("state") == "firing"]
        for payload in fired:
            self.say(f"drill: healthy: FALSE ALERT {payload.get('title')} — {payload.get('message', '')[:200]}")
        return len(fired)

    def warm_up(self, timeout: float = 300) -> None:
        """Until the webserver answers and every sensor has ticked once, then a little more."""
        query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name sensorState { ticks(limit: 1) { status } } } } } } }"  # noqa: E501
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                nodes = self.t.graphql(query)["data"]["repositoriesOrError"]["nodes"]
                sensors = nodes[0]["sensors"]
                if sensors and all(s["sensorState"]["ticks"] for s in sensors):
                    self.say(f"drill: every sensor ticked ({len(sensors)}); settling")
                    self.settle()
                    return
            except Exception:  # the webserver is still starting
                pass
            time.sleep(3)
        raise RuntimeError("the topology did not come up: no tick from every sensor within 5 minutes")


def render(results: list[ModeResult], false_alerts: int | None, healthy_minutes: float) -> str:
    lines = ["| mode | first alert after | limit | within | first alert's text |", "|---|---:|---:|---|---|"]
    for r in results:
        after = "none" if r.alert_after_s is None else f"{r.alert_after_s:.0f} s"
        text = (r.alert_text or "").replace("|", "\\|")[:220]
        lines.append(f"| {r.mode} | {after} | {r.limit_s:.0f} s | {'yes' if r.ok else 'NO'} | {text} |")
    if false_alerts is not None:
        lines.append(f"\nhealthy: {false_alerts} false alerts in {healthy_minutes:g} minutes with nothing injected")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.drill", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", action="append", help="one mode (repeatable); default every mode + healthy")
    parser.add_argument("--healthy-minutes", type=float, default=30.0, help="length of the healthy window")
    parser.add_argument("--json", action="store_true", help='print {"modes": [...], "false_alerts": N}')
    parser.add_argument("--work", help="folder for logs and the Dagster home (default: a temporary one, kept)")
    parser.add_argument(
        "--settle", type=float, default=SETTLE, help=f"seconds after each mode for recoveries (default {SETTLE:g})"
    )
    parser.add_argument("--db-prefix", default="tp_drill", help="names of the databases it creates and drops")
    return parser


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> dict:  # type: ignore[type-arg]
    args = build_parser().parse_args(argv)
    modes = args.mode or [*MODES, "healthy"]
    unknown = [m for m in modes if m not in (*MODES, "healthy")]
    if unknown:
        raise SystemExit(f"unknown mode(s) {', '.join(unknown)}; modes: healthy, {', '.join(MODES)}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tp-drill-"))
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(f"drill: topology in {work} (logs kept there)")
    topology = Topology(work, db_prefix=args.db_prefix)
    results: list[ModeResult] = []
    false_alerts: int | None = None
    try:
        topology.start()
        drill = Drill(topology, say, settle_seconds=args.settle)
        drill.warm_up()
        if "healthy" in modes:  # first, on the fresh system: any alert now is a false one
            false_alerts = drill.healthy(args.healthy_minutes)
        for mode in (m for m in modes if m != "healthy"):
            try:
                results.append(drill.measure(mode))
            except Exception as exc:  # a drill bug in one mode must not lose the others' results
                say(f"drill: {mode}: the drill itself failed: {type(exc).__name__}: {exc}")
                results.append(ModeResult(mode, None, f"drill error: {type(exc).__name__}: {exc}", DEFAULT_LIMIT))
    finally:
        topology.close()
    report = {
        "modes": [{"mode": r.mode, "alert_after_s": r.alert_after_s, "alert_text": r.alert_text} for r in results],
        "false_alerts": false_alerts,
    }
    print(json.dumps(report, indent=2) if args.json else render(results, false_alerts, args.healthy_minutes), file=out)
    return {**report, "results": [asdict(r) for r in results]}


if __name__ == "__main__":
    main()
