"""`trading-pipeline report` and `trading-pipeline backfill`: performance in the terminal, backfills without a UI.

`register(subparsers)` adds both commands to the `trading-pipeline` parser (cli/main.py calls it). Each
handler returns an exit code; the product's own errors (settings, DB, broker configuration) propagate to main,
which prints them as one line with the fix.

- `report --from D1 --to D2`: the stored `daily_performance` rows as the same table the Dagster UI shows,
  trading days of the range that have no row yet (named, never silently skipped), and the chart as a PNG.
- `backfill ASSET --from D1 --to D2`: materializes `universe` or `performance` for every partition in the
  range through Dagster, in this process, recorded on the Dagster instance (DAGSTER_HOME, or the project-local
  one under the data dir) so the runs show in the UI. `performance` runs the whole range as one run (its
  backfill policy); `universe` runs one run per partition. No daemon is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from trading_pipeline.cli.common import EXIT_FAILED, EXIT_OK
from trading_pipeline.settings import Settings, SettingsError

BACKFILLABLE = ("universe", "performance")
BACKFILL_TAG = "trading_pipeline/backfill"
QUIET_LOGS: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def register(subparsers: Any) -> None:
    """Add `report` and `backfill` to the `trading-pipeline` subcommands."""
    report = subparsers.add_parser(
        "report",
        help="print daily performance (P&L, win rate, vs SPY) for a date range and write the equity chart",
    )
    report.add_argument("--from", dest="first", type=_day, required=True, help="first day, YYYY-MM-DD")
    report.add_argument("--to", dest="last", type=_day, required=True, help="last day, YYYY-MM-DD")
    report.add_argument(
        "--chart", type=Path, help="PNG to write (default <data dir>/charts/performance_<from>_<to>.png)"
    )
    report.set_defaults(handler=report_command)

    backfill = subparsers.add_parser(
        "backfill",
        help="materialize `universe` or `performance` for every partition in a date range (no daemon needed)",
    )
    backfill.add_argument("asset", choices=BACKFILLABLE, help="the partitioned asset to backfill")
    backfill.add_argument("--from", dest="first", type=_day, required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--to", dest="last", type=_day, required=True, help="last day, YYYY-MM-DD")
    backfill.add_argument("--config-json", help="Dagster run config as JSON (e.g. the universe sample_size)")
    backfill.set_defaults(handler=backfill_command)


# ---- report --------------------------------------------------------------------------------------------


def report_command(args: argparse.Namespace, out: Any = None) -> int:
    from trading_pipeline.assets.trading_days import nyse_sessions
    from trading_pipeline.steps.performance_chart import render_equity_chart, write_chart
    from trading_pipeline.steps.performance_table import text_table
    from trading_pipeline.store import performance_repository as perf_repo
    from trading_pipeline.store.database import Database, redact
    from trading_pipeline.store.migrate import ensure_schema_current

    out = out or sys.stdout
    first, last = _ordered(args.first, args.last)
    settings = Settings.from_env()
    with Database(settings.database_url) as db:
        ensure_schema_current(db)
        rows = perf_repo.daily_performance(db, first=first, last=last)
    where = redact(settings.database_url)
    missing = sorted(set(nyse_sessions(first, last)) - {row.trading_date for row in rows})
    if not rows:
        print(
            f"trading-pipeline: no daily performance stored from {first} to {last} in {where}; compute it with "
            f"`trading-pipeline backfill performance --from {first} --to {last}`",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"daily performance {first} → {last} ({len(rows)} trading days, trading DB {where})", file=out)
    print(text_table(rows), file=out)
    if missing:
        listed = ", ".join(day.isoformat() for day in missing)
        print(
            f"not computed yet ({len(missing)} trading days): {listed} — "
            f"`trading-pipeline backfill performance --from {missing[0]} --to {missing[-1]}`",
            file=out,
        )
    chart = args.chart or settings.data_dir / "charts" / f"performance_{first}_{last}.png"
    path = write_chart(render_equity_chart(rows), chart)
    print(f"chart: {path}", file=out)
    return EXIT_OK


def _ordered(first: date, last: date) -> tuple[date, date]:
    if first > last:
        raise SettingsError(f"--from {first} is after --to {last}")
    return first, last


# ---- backfill ------------------------------------------------------------------------------------------


@dataclass
class BackfillRun:
    first_key: str
    last_key: str
    partitions: int
    run_id: str
    success: bool
    seconds: float
    error: str = ""


@dataclass
class BackfillOutcome:
    asset: str
    backfill_id: str
    keys: list[str]
    runs: list[BackfillRun] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return bool(self.runs) and all(run.success for run in self.runs)


def partition_keys(definitions: Any, asset: str, first: date, last: date) -> list[str]:
    """The asset's partition keys from `first` to `last` (for `performance`: trading days only)."""

    partitions = definitions.resolve_assets_def(asset).partitions_def
    if partitions is None:
        raise SettingsError(f"{asset} is not partitioned; there is nothing to backfill")
    # Up to the current partition: a range reaching into the future gets the days that exist.
    return [key for key in partitions.get_partition_keys() if first.isoformat() <= key <= last.isoformat()]


def partitions_per_run(policy: Any, total: int) -> int:
    """Dagster's backfill policy: single_run → the whole range; multi_run(n) → n; none → one per run."""
    if policy is None:
        return 1
    return policy.max_partitions_per_run or total


def run_backfill(
    definitions: Any,
    asset: str,
    first: date,
    last: date,
    *,
    instance: Any,
    run_config: dict[str, Any] | None = None,
    echo: Any = None,
) -> BackfillOutcome:
    """Materialize `asset` over [first, last] in this process; one run per range or per partition,
    as the asset's backfill policy says. Runs carry the tag `trading_pipeline/backfill=<id>`."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    first, last = _ordered(first, last)
    keys = partition_keys(definitions, asset, first, last)
    outcome = BackfillOutcome(asset=asset, backfill_id=uuid.uuid4().hex[:12], keys=keys)
    if not keys:
        return outcome
    per_run = partitions_per_run(definitions.resolve_assets_def(asset).backfill_policy, len(keys))
    job = definitions.resolve_implicit_job_def_def_for_assets([dg.AssetKey(asset)])
    config = _merge(QUIET_LOGS, run_config or {})
    for start in range(0, len(keys), per_run):
        chunk = keys[start : start + per_run]
        tags = {BACKFILL_TAG: outcome.backfill_id}
        partition_key = None
        if len(chunk) == 1:
            partition_key = chunk[0]
        else:
            tags.update({ASSET_PARTITION_RANGE_START_TAG: chunk[0], ASSET_PARTITION_RANGE_END_TAG: chunk[-1]})
        began = time.perf_counter()
        result = job.execute_in_process(
            run_config=config,
            instance=instance,
            partition_key=partition_key,
            tags=tags,
            asset_selection=[dg.AssetKey(asset)],
            raise_on_error=False,
        )
        run = BackfillRun(
            first_key=chunk[0],
            last_key=chunk[-1],
            partitions=len(chunk),
            run_id=result.run_id,
            success=result.success,
            seconds=time.perf_counter() - began,
            error="" if result.success else _first_failure(result),
        )
        outcome.runs.append(run)
        if echo is not None:
            span = run.first_key if run.partitions == 1 else f"{run.first_key} … {run.last_key}"
            state = "SUCCESS" if run.success else f"FAILURE: {run.error}"
            print(
                f"  {asset} {span} ({run.partitions} partitions): {state} — run {run.run_id}, {run.seconds:.1f} s",
                file=echo,
            )
    return outcome


def _first_failure(result: Any) -> str:
    for event in result.all_events:
        if event.is_step_failure or event.event_type_value == "RUN_FAILURE":
            data = event.event_specific_data
            error = getattr(data, "error", None)
            if error is not None:
                return error.message.strip().splitlines()[0]
            return event.message or "run failed"
    return "run failed"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def dagster_instance(settings: Settings) -> Any:
    """DAGSTER_HOME's instance if set, else the project-local one the demo uses (<data dir>/dagster_home)."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    from trading_pipeline.harness.demo_setup import prepare_dagster_home

    return dg.DagsterInstance.from_config(str(prepare_dagster_home(settings.data_dir)))


def backfill_command(args: argparse.Namespace, out: Any = None) -> int:
    from trading_pipeline.definitions import build_definitions, build_resources

    out = out or sys.stdout
    first, last = _ordered(args.first, args.last)
    try:
        run_config = json.loads(args.config_json) if args.config_json else None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"--config-json is not JSON: {exc}") from None
    settings = Settings.from_env()
    definitions = build_definitions(build_resources(settings))
    with dagster_instance(settings) as instance:
        print(f"backfill {args.asset} {first} → {last} on the Dagster instance at {instance.root_directory}", file=out)
        outcome = run_backfill(definitions, args.asset, first, last, instance=instance, run_config=run_config, echo=out)
    if not outcome.keys:
        print(f"trading-pipeline: {args.asset} has no partitions from {first} to {last}", file=sys.stderr)
        return EXIT_FAILED
    failed = [run for run in outcome.runs if not run.success]
    print(
        f"backfill {outcome.backfill_id}: {len(outcome.keys)} partitions in {len(outcome.runs)} runs, "
        f"{len(failed)} failed (runs tagged {BACKFILL_TAG}={outcome.backfill_id})",
        file=out,
    )
    return EXIT_OK if not failed else EXIT_FAILED
