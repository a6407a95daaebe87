"""Where the demo runs: which session it replays, its project-local Dagster home (so the runs stay visible
in `dagster dev`) and a fresh SQLite trading DB."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

from trading_pipeline.domain.calendar import session_bounds
from trading_pipeline.settings import SettingsError

# A regular session (no holiday, no half day) the demo replays by default, so its report is the same whatever
# day it is run (replaying "yesterday" made the outcome depend on the date; the README shows this session).
DEFAULT_SESSION = date(2026, 11, 24)


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


UI_ENV_MARKER = "# written by `trading-pipeline demo`"


def write_ui_env(path: Path | None, *, home: Path, database_url: str) -> None:
    """The `.env` that `dagster dev`, `dg dev` and `trading-pipeline ui` load from the folder they start in:
    the demo's Dagster instance and trading DB, and the sim broker (`trading-pipeline ui` serves it) — so the UI
    opened after the demo shows the demo's runs and its sensors judge the DB the demo migrated (without it
    the UI's code location opened an unmigrated ./data/trading.db and every sensor failed). A .env the user
    wrote (no marker line) is left alone."""
    if path is None:
        return
    if path.exists() and UI_ENV_MARKER not in path.read_text(encoding="utf-8"):
        return
    lines = [
        f"{UI_ENV_MARKER}; delete it to use the defaults again",
        f"DAGSTER_HOME={home}",
        f"DATABASE_URL={database_url}",
        "TRADING_PIPELINE_BROKER=sim",
        # The demo tells no one: said explicitly, so the UI's pre-flight is GO on this and honest about it.
        "TRADING_PIPELINE_ALERTS=log-only",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
