"""Benchmark: reaction time from a gap-down through a stop to the close order reaching the broker.

    python -m bench.reaction                 # 5 repetitions per path (sensor, then schedule), 12 positions
    python -m bench.reaction --repetitions 8 --keep-logs

What runs: the sim broker in this process (real-time clock, inside an NYSE session), a fresh SQLite trading
DB with open positions (stops 10% below the bid; the sim account holds them), a project-local Dagster
instance (a temporary DAGSTER_HOME with the repo's dagster.yaml), and `dagster-daemon run -w workspace.yaml`
as a subprocess pointed at both through the environment — the production path: sensor → queued run →
run coordinator → run worker subprocess → `stop_loss_job` → close order.

Per repetition: wait a random 0–30 s (so the gap lands at a random phase of the sensor's 30 s interval),
gap one position's symbol down 15% at a known instant T0, and record when the close order for it reaches the
sim broker (the order book's `place` is wrapped to stamp the wall time). The Dagster run that sent it
splits the interval:

- detection: T0 → run created (the `stop_trigger_sensor` tick, or the `stop_loss_schedule` tick if that
  came first — the run's `trading_pipeline/trigger` tag says which);
- queue → start: run created → RUN_START (the daemon dequeues it, launches a worker process, which loads
  the code and starts);
- run → order: RUN_START → the order reaches the broker (quotes → positions → closes);
- total: T0 → order at the broker.

Both paths are measured, one after the other, with the other trigger stopped (`dagster sensor|schedule stop`,
as the UI's toggle does): the sensor path (`stop_trigger_sensor`, every 10 s) and the schedule path
(`stop_loss_schedule`, every 2 minutes). Both ask the broker's clock, and the sim's session is open now, so both
can be measured at any hour. "after trigger" is queue → start + run → order: what follows the tick, the same
for both paths; detection is bounded by the trigger's cadence.

    python -m bench.reaction --path sensor --repetitions 8
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.sweep import REPO_ROOT, SEED, machine, seed_positions
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade

SENSOR = "stop_trigger_sensor"
SCHEDULE = "stop_loss_schedule"
# path → (the trigger measured, the one stopped meanwhile, the trigger's cadence in s: the default phase spread)
PATHS = {"sensor": (SENSOR, SCHEDULE, 10.0), "schedule": (SCHEDULE, SENSOR, 120.0)}
JOB = "stop_loss_job"
TRIGGER_TAG = "trading_pipeline/trigger"
SESSION_START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 New York, a regular session
GAP_PCT = -15


@dataclass
class Reaction:
    repetition: int
    symbol: str
    trigger: str
    detection_s: float
    queue_to_start_s: float
    run_to_order_s: float
    total_s: float
    run_id: str
    path: str = "sensor"

    @property
    def after_trigger_s(self) -> float:
        return self.queue_to_start_s + self.run_to_order_s


class OrderStamps:
    """Wall time at which each order reached the sim broker, by symbol (wraps the order book's `place`)."""

    def __init__(self, sim: SimBroker) -> None:
        self._stamps: dict[str, list[tuple[float, str]]] = {}
        self._lock = threading.Lock()
        book = sim.market.book
        original = book.place

        def place(params: Any) -> Any:
            arrived = time.time()
            order = original(params)
            with self._lock:
                self._stamps.setdefault(order.symbol, []).append((arrived, order.side))
            return order

        book.place = place  # type: ignore[method-assign]

    def first_sell_after(self, symbol: str, moment: float) -> float | None:
        with self._lock:
            times = [t for t, side in self._stamps.get(symbol, []) if side == "sell" and t >= moment]
        return min(times) if times else None


class Daemon:
    """`dagster-daemon run` on the repo's workspace.yaml; its output is kept and scanned for readiness."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._ready = threading.Event()
        self._log = log_path.open("w")
        daemon = Path(sys.executable).with_name("dagster-daemon")
        command = [str(daemon), "run", "-w", str(REPO_ROOT / "workspace.yaml")]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stopping it also stops its code server
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._log.write(line)
            self._log.flush()
            if f"sensor: {SENSOR}" in line or f"sensor {SENSOR}" in line:
                self._ready.set()

    def wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            self.stop()
            tail = self.log_path.read_text()[-3000:]
            raise SystemExit(f"dagster-daemon did not evaluate {SENSOR} within {timeout:.0f} s; log tail:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        self._log.close()


def set_trigger(env: dict[str, str], kind: str, name: str, action: str) -> None:
    """`dagster sensor|schedule start|stop NAME`: the state the UI's toggle stores, read by the running daemon."""
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), kind, action, name, "-w", str(REPO_ROOT / "workspace.yaml")]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[1:4])} failed: {(done.stderr or done.stdout).strip()[-500:]}")


def select_path(env: dict[str, str], path: str) -> None:
    """Only the measured trigger runs: the other is stopped, the measured one (re)started."""
    measured, other, _ = PATHS[path]
    for name, action in ((other, "stop"), (measured, "start")):
        set_trigger(env, "sensor" if name == SENSOR else "schedule", name, action)


def find_run(instance: Any, after: float, symbol: str) -> Any | None:
    """The first stop_loss_job run created after `after` (the one that reacts to the gap)."""
    import dagster as dg

    records = instance.get_run_records(dg.RunsFilter(job_name=JOB), limit=20)
    candidates = [r for r in records if r.create_timestamp.timestamp() >= after - 0.5]
    candidates.sort(key=lambda r: r.create_timestamp)
    triggered = [r for r in candidates if symbol in r.dagster_run.tags.get("trading_pipeline/trigger_symbols", "")]
    chosen = triggered or candidates
    return chosen[0] if chosen else None


def wait_for(predicate: Any, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def wait_until_idle(instance: Any, timeout: float) -> None:
    import dagster as dg

    from trading_pipeline.monitoring.runs import IN_FLIGHT

    def idle() -> bool:
        return not instance.get_run_records(dg.RunsFilter(job_name=JOB, statuses=IN_FLIGHT), limit=1)

    wait_for(idle, timeout, 0.2)


def run_bench(args: argparse.Namespace, out: Any) -> list[Reaction]:
    import dagster as dg

    workdir = Path(tempfile.mkdtemp(prefix="bench_reaction_"))
    home = workdir / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    db_url = f"sqlite:///{workdir / 'trading.db'}"
    reactions: list[Reaction] = []
    with SimBroker(seed=SEED, n_symbols=300, start=SESSION_START, realtime=True) as sim, Database(db_url) as db:
        upgrade(db)
        seed_positions(db, sim, args.positions, args.positions, exit_every=0)
        symbols = sorted({p for p in sim.market.book.positions})
        stamps = OrderStamps(sim)
        env = {
            **os.environ,
            **sim.env(),
            "DAGSTER_HOME": str(home),
            "DATABASE_URL": db_url,
            "TRADING_PIPELINE_DATA_DIR": str(workdir),
        }
        print(f"sim broker {sim.url}; trading DB {db_url}; DAGSTER_HOME {home}", file=out, flush=True)
        daemon = Daemon(env, workdir / "dagster-daemon.log")
        try:
            daemon.wait_ready(args.ready_timeout)
            print("dagster-daemon is evaluating the sensors; starting repetitions", file=out, flush=True)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                rng = random.Random(args.seed)
                paths = list(PATHS) if args.path == "both" else [args.path]
                plan = [(path, k) for path in paths for k in range(args.repetitions)]
                if len(plan) > len(symbols):
                    raise SystemExit(f"{len(plan)} repetitions need as many positions; pass --positions {len(plan)}")
                current = None
                for n, (path, _) in enumerate(plan):
                    if path != current:
                        wait_until_idle(instance, 120)
                        select_path(env, path)
                        current = path
                        print(f"path: {path} ({PATHS[path][0]}; {PATHS[path][1]} stopped)", file=out, flush=True)
                    symbol = symbols[n]
                    spread = args.phase_spread if args.phase_spread is not None else PATHS[path][2]
                    time.sleep(rng.uniform(0, spread))
                    t0 = time.time()
                    sim.market.gap(symbol, GAP_PCT)
                    ordered = wait_for(lambda s=symbol, t=t0: stamps.first_sell_after(s, t), args.timeout)
                    if ordered is None:
                        raise SystemExit(f"repetition {n + 1}: no close order for {symbol} within {args.timeout} s")
                    record = wait_for(lambda s=symbol, t=t0: find_run(instance, t, s), 30, 0.2)
                    if record is None:
                        raise SystemExit(f"repetition {n + 1}: the order arrived but no {JOB} run was found")
                    record = wait_for(
                        lambda r=record: _with_start(instance, r.dagster_run.run_id), 60, 0.2
                    )  # start_time is set once RUN_START is stored
                    created = record.create_timestamp.timestamp()
                    reaction = Reaction(
                        repetition=n + 1,
                        symbol=symbol,
                        trigger=record.dagster_run.tags.get(TRIGGER_TAG, "manual"),
                        detection_s=created - t0,
                        queue_to_start_s=record.start_time - created,
                        run_to_order_s=ordered - record.start_time,
                        total_s=ordered - t0,
                        run_id=record.dagster_run.run_id,
                        path=path,
                    )
                    reactions.append(reaction)
                    print(format_reaction(reaction), file=out, flush=True)
                    wait_until_idle(instance, 120)
        finally:
            daemon.stop()
            if args.keep_logs:
                print(f"daemon log and instance kept in {workdir}", file=out)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return reactions


def _with_start(instance: Any, run_id: str) -> Any | None:
    import dagster as dg

    [record] = instance.get_run_records(dg.RunsFilter(run_ids=[run_id]), limit=1)
    return record if record.start_time else None


HEADER = (
    f"{'rep':>3}  {'symbol':<7} {'trigger':<13} {'detection s':>11} {'queue→start s':>13} {'run→order s':>11} "
    f"{'after trigger s':>15} {'total s':>8}"
)


def format_reaction(r: Reaction) -> str:
    return (
        f"{r.repetition:>3}  {r.symbol:<7} {r.trigger:<13} {r.detection_s:>11.2f} {r.queue_to_start_s:>13.2f} "
        f"{r.run_to_order_s:>11.2f} {r.after_trigger_s:>15.2f} {r.total_s:>8.2f}"
    )


def summary(reactions: Sequence[Reaction]) -> str:
    """Median and max of each interval, per path (goal: total median ≤ 15 s, max ≤ 30 s)."""
    lines = []
    for path in PATHS:
        chosen = [r for r in reactions if r.path == path]
        if not chosen:
            continue
        lines.append(f"{path} path ({PATHS[path][0]}), {len(chosen)} repetitions:")
        for label, name in (
            ("detection", "detection_s"),
            ("queue → start", "queue_to_start_s"),
            ("run → order", "run_to_order_s"),
            ("after trigger", "after_trigger_s"),
            ("total", "total_s"),
        ):
            values = [getattr(r, name) for r in chosen]
            lines.append(f"  {label:<14} median {statistics.median(values):6.2f} s   max {max(values):6.2f} s")
        totals = [r.total_s for r in chosen]
        met = statistics.median(totals) <= 15 and max(totals) <= 30
        lines.append(f"  goal (total median ≤ 15 s, max ≤ 30 s): {'met' if met else 'not met'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.reaction", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5, help="repetitions per path")
    parser.add_argument("--path", choices=["both", *PATHS], default="both", help="which trigger to measure")
    parser.add_argument("--positions", type=int, default=12, help="open positions (one symbol each, one per gap)")
    parser.add_argument(
        "--phase-spread", type=float, default=None, help="random wait before each gap, s (default: the cadence)"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="max seconds from gap to order")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="max seconds for the daemon to start")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, out: Any = None) -> list[Reaction]:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    if args.repetitions < 1:
        raise SystemExit("--repetitions must be at least 1")
    print(f"# reaction-time bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", file=out)
    print(f"machine: {machine()}", file=out)
    print(HEADER, file=out, flush=True)
    reactions = run_bench(args, out)
    print(summary(reactions), file=out)
    return reactions


if __name__ == "__main__":
    main()
