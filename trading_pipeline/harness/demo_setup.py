"""Where the demo runs: which session it replays, its project-local Dagster home (so the runs stay visible
in `dagster dev`) and a fresh SQLite trading DB."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import exchange_calendars as xcals
import pandas as pd

from trading_pipeline.domain.calendar import session_bounds
from trading_pipeline.settings import SettingsError


def last_full_session(today: date) -> date:
    """The most recent NYSE session before `today` (a whole, past day the simulator can replay)."""
    calendar = xcals.get_calendar("XNYS")
    sessions = calendar.sessions_in_range(pd.Timestamp(today) - pd.Timedelta(days=14), pd.Timestamp(today))
    earlier = [s.date() for s in sessions if s.date() < today]
    return earlier[-1]


def session_span(day: date) -> tuple[datetime, datetime]:
    """The session's open and close (UTC); a day that is no NYSE session is a settings error naming it."""
    bounds = session_bounds(day)
    if bounds is None:
        raise SettingsError(f"{day} is not an NYSE session (weekend or holiday): pick a trading day for --date")
    return bounds[0].astimezone(UTC), bounds[1].astimezone(UTC)


def prepare_dagster_home(data_dir: Path) -> Path:
    home = (data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    project_yaml = Path(__file__).resolve().parents[2] / "dagster.yaml"  # the repository's
    if project_yaml.exists():
        shutil.copyfile(project_yaml, home / "dagster.yaml")
    return home


def fresh_trading_db(data_dir: Path) -> Path:
    folder = (data_dir / "demo").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trading.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path
