"""Bring-your-own-strategy, end to end: the code location with a broken strategy, the demo with a broken and
with the example strategy, and the example package installed into a fresh virtualenv."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from datetime import date
from pathlib import Path

import pytest

from trading_pipeline.harness.demo import Demo, DemoOptions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "breakout_strategy"
LOAD_DEFINITIONS = (
    "import trading_pipeline.definitions as d; "
    "print(d.defs.resolve_job_def('stop_loss_job').name, len(d.defs.resolve_all_job_defs()))"
)


def load_definitions(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "TRADING_PIPELINE_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(
        [sys.executable, "-c", LOAD_DEFINITIONS], env=environ, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_a_broken_strategy_never_fails_the_location_that_runs_the_sweeps(tmp_path: Path) -> None:
    loaded = load_definitions(tmp_path, TRADING_PIPELINE_STRATEGY="no_such_package.signals:Strategy")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("stop_loss_job ")  # the stop-loss job, schedules and sensors all load
    [line] = [text for text in loaded.stderr.splitlines() if "no_such_package" in text]
    assert (
        "entry strategy 'no_such_package.signals:Strategy': module 'no_such_package.signals' is not installed" in line
    )
    assert "pip install -e" in line and "stop-loss protection is unaffected" in line
    clean = load_definitions(tmp_path)
    assert clean.returncode == 0 and "entry strategy" not in clean.stderr


def test_the_location_never_runs_a_strategys_import_time_code(tmp_path: Path) -> None:
    """A strategy that crashes at import (or loads a big model, or hangs) would otherwise be imported by every
    stop-loss run's process."""
    marker = tmp_path / "imported"
    (tmp_path / "heavy_strategy.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n")
    loaded = load_definitions(tmp_path, TRADING_PIPELINE_STRATEGY="heavy_strategy:Strategy", PYTHONPATH=str(tmp_path))
    assert loaded.returncode == 0, loaded.stderr
    assert not marker.exists() and "entry strategy" not in loaded.stderr


def test_the_demo_shows_a_broken_strategys_line_while_the_sweeps_go_on(tmp_path: Path) -> None:
    out = io.StringIO()
    options = DemoOptions(
        data_dir=tmp_path,
        minutes=6,
        session_date=date(2026, 11, 24),
        n_symbols=400,
        sample_size=80,
        strategy="no_such_package.signals:Strategy",
    )
    report = Demo(options, out=out).run()
    text = out.getvalue()
    assert "trading day ✗ FAILED" in text
    [line] = [row for row in text.splitlines() if "entry strategy 'no_such_package.signals:Strategy'" in row]
    assert "No module named 'no_such_package'" in line and "the stop-loss runs go on" in line
    assert not report.healthy and report.runs_failed == 1  # the trading day, only
    assert report.runs_succeeded == 3 + report.trigger_runs  # every stop-loss run of the 6 minutes


def test_the_example_packages_own_tests_pass() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


@pytest.mark.slow
def test_the_example_installs_into_a_fresh_venv_and_trades_in_the_demo(tmp_path: Path) -> None:
    """`pip install examples/breakout_strategy` in a new virtualenv (layered on this environment's packages, so
    nothing is downloaded), then `demo --strategy breakout` finds it by its entry point alone."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site_packages, "project_environment.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    # Built from a copy: a build writes build/ and *.egg-info next to the sources, which is not the test's to do.
    source = shutil.copytree(EXAMPLE, tmp_path / "example", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    where = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.distribution('tp-breakout-strategy').locate_file(''))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).resolve() == Path(site_packages).resolve()  # found in the new venv, not borrowed from ours
    demo = subprocess.run(
        [
            python,
            "-c",
            "import sys; from trading_pipeline.cli.main import main; sys.exit(main(sys.argv[1:]))",
            "demo",
            "--strategy",
            "breakout",
            "--minutes",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TRADING_PIPELINE_DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    opened = next(line for line in demo.stdout.splitlines() if "trading day ✓" in line)
    assert "positions opened" in opened and " 0 positions opened" not in opened
    assert "HEALTHY" in demo.stdout


def test_the_readmes_strategy_loads_and_its_intents_pass_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from trading_pipeline.domain.strategy import AccountView, DailyBar, StrategyInputs
    from trading_pipeline.domain.strategy_intents import checked_intents
    from trading_pipeline.domain.types import Quote
    from trading_pipeline.resources.strategy_loading import load_strategy

    section = (ROOT / "README.md").read_text().split("## Write your own strategy", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (tmp_path / "readme_dip_buyer.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_strategy("readme_dip_buyer:DipBuyer", '{"stop_pct": 3}')
    now = datetime(2026, 11, 24, 14, 31, tzinfo=UTC)
    bars = tuple(DailyBar(date(2026, 11, 19 + i), *(Decimal(c),) * 4, 1000) for i, c in enumerate(["30", "29", "28"]))
    inputs = StrategyInputs(
        trading_date=date(2026, 11, 24),
        now=now,
        universe=("DIP", "UP"),
        quotes={s: Quote(s, Decimal("27.99"), Decimal("28.01"), now) for s in ("DIP", "UP")},
        bars={"DIP": bars, "UP": tuple(reversed(bars))},
        positions=(),
        account=AccountView(Decimal(10_000), Decimal(10_000), Decimal(10_000)),
    )
    [priced], _ = checked_intents(loaded.strategy.entry_intents(inputs), inputs, loaded.strategy.name)
    assert priced.symbol == "DIP" and priced.intent.stop_loss == Decimal("27.17")
    assert priced.intent.take_profit == Decimal("30.25")  # 28.01 × 1.08 = 30.2508, onto the cent grid
