"""Settings validation and the `trading-pipeline` CLI's errors: one line, the fix, exit code ≠ 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from trading_pipeline.cli.main import main
from trading_pipeline.settings import BrokerKind, Settings, SettingsError, TradingMode
from trading_pipeline.store.migrate import head_revision


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    settings = Settings.from_env({"TRADING_PIPELINE_DATA_DIR": str(tmp_path)})
    assert settings.broker is BrokerKind.SIM and settings.trading_mode is TradingMode.PAPER
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'trading.db'}"


def test_live_requires_the_opt_in() -> None:
    with pytest.raises(SettingsError, match="TRADING_LIVE_CONFIRM=yes-real-money"):
        Settings.from_env({"TRADING_MODE": "live"})
    with pytest.raises(SettingsError):
        Settings.from_env({"TRADING_MODE": "live", "TRADING_LIVE_CONFIRM": "yes"})
    live = Settings.from_env({"TRADING_MODE": "LIVE", "TRADING_LIVE_CONFIRM": "yes-real-money"})
    assert live.trading_mode is TradingMode.LIVE


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRADING_MODE": "demo"}, "TRADING_MODE must be one of paper, live"),
        ({"TRADING_PIPELINE_BROKER": "ibkr"}, "TRADING_PIPELINE_BROKER must be one of sim, alpaca"),
        ({"TRADING_PIPELINE_SIM_SEED": "x"}, "must be an integer"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], *argv: str):
    for name in ("DATABASE_URL", "TRADING_MODE", "TRADING_PIPELINE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_upgrade_then_current(tmp_path, monkeypatch, capsys) -> None:
    env = {"TRADING_PIPELINE_DATA_DIR": str(tmp_path)}
    code, out, _ = run_cli(monkeypatch, capsys, env, "db", "upgrade")
    assert code == 0 and f"upgraded: (empty) → {head_revision()}" in out
    code, out, _ = run_cli(monkeypatch, capsys, env, "db", "upgrade")
    assert code == 0 and "already at migration" in out
    code, out, _ = run_cli(monkeypatch, capsys, env, "db", "current")
    assert code == 0 and "up to date" in out


def test_db_current_on_an_empty_db_says_upgrade(tmp_path, monkeypatch, capsys) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, {"TRADING_PIPELINE_DATA_DIR": str(tmp_path)}, "db", "current")
    assert code == 1 and "trading-pipeline db upgrade" in out


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
        ({"DATABASE_URL": "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"}, "cannot connect"),
        ({"TRADING_MODE": "live"}, "opt-in"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, env, fragment) -> None:
    env = {"TRADING_PIPELINE_DATA_DIR": str(tmp_path / "data"), **env}
    code, out, err = run_cli(monkeypatch, capsys, env, "db", "upgrade")
    assert code == 2 and out == ""
    assert fragment in err and err.count("\n") == 1 and "hunter2" not in err
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())  # nothing half-written


def test_no_command_prints_help(capsys) -> None:
    assert main([]) == 2
    assert "db" in capsys.readouterr().out
