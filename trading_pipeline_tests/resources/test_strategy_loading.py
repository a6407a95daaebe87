"""Selecting a strategy: built-in, entry point, import path; its params checked by its own schema; every
problem one line that names the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from trading_pipeline.domain.strategy import StrategyProblem, UnknownStrategy
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.resources.strategy_loading import check_without_importing, known_names, load_strategy
from trading_pipeline_tests.strategy_plugins import PATH

EXAMPLE_SRC = Path(__file__).resolve().parents[2] / "examples" / "breakout_strategy" / "src"


def fake_distribution(root: Path, name: str, points: dict[str, str], modules: dict[str, str] | None = None) -> Path:
    """An installed distribution as importlib.metadata sees one: a .dist-info with entry_points.txt on sys.path."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in points.items())
    (info / "entry_points.txt").write_text(f"[trading_pipeline.strategies]\n{lines}")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(source)
    return root


def one_line_with_fix(problem: BaseException) -> str:
    text = str(problem)
    assert "\n" not in text and " — " in text, text
    return text


def test_momentum_is_the_default_and_its_params_are_validated() -> None:
    loaded = load_strategy("", '{"lookback_days": 3}')
    assert loaded.strategy.name == "momentum" and loaded.selection.source == "built-in"
    assert loaded.strategy.bars_lookback_days == 3 and loaded.params["lookback_days"] == 3
    with pytest.raises(StrategyProblem, match="lookback_days: Input should be greater than or equal to 2") as bad:
        load_strategy("momentum", '{"lookback_days": 1}')
    one_line_with_fix(bad.value)


def test_an_installed_package_is_found_by_its_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example package's own entry point, as `pip install` would register it (nothing is installed)."""
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    monkeypatch.syspath_prepend(
        str(fake_distribution(tmp_path, "tp-breakout-strategy", {"breakout": "tp_breakout.strategy:BreakoutStrategy"}))
    )
    assert "breakout" in known_names()
    loaded = load_strategy("breakout", '{"lookback_days": 3, "notional_per_entry": 1500}')
    assert loaded.strategy.name == "breakout" and loaded.strategy.bars_lookback_days == 3
    assert loaded.selection.source == "entry point of tp-breakout-strategy 1.0"
    assert loaded.describe()["params"]["notional_per_entry"] == "1500"
    check_without_importing("breakout", "")
    with pytest.raises(StrategyProblem, match="unknown parameter"):
        load_strategy("breakout", '{"notional": 1500}')


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownStrategy, match=r"known strategies: .*momentum") as unknown:
        load_strategy("moonshot")
    assert "pip install" in one_line_with_fix(unknown.value)


def test_an_entry_point_may_not_shadow_the_built_in_or_another_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path / "a", "shadow-pkg", {"momentum": "json:dumps"})))
    with pytest.raises(StrategyProblem, match=r"also an entry point of shadow-pkg 1\.0"):
        load_strategy("momentum")
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path / "b", "twin-one", {"twin": "json:dumps"})))
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path / "c", "twin-two", {"twin": "json:loads"})))
    with pytest.raises(StrategyProblem, match="registered by more than one package") as twice:
        load_strategy("twin")
    assert "twin-one" in one_line_with_fix(twice.value) and "twin-two" in str(twice.value)


BROKEN: dict[str, tuple[str, str, str]] = {
    "not an import path": ("my strategies:X", "", "is not an import path"),
    "module not installed": ("no_such_package.strategies:Thing", "", "No module named 'no_such_package'"),
    "missing attribute": (f"{PATH}:Nope", "", "has no attribute 'Nope'"),
    "not callable": (f"{PATH}:NOT_CALLABLE", "", "is a int, not a class"),
    "no entry_intents": (f"{PATH}:NoIntentsMethod", "", "has no entry_intents method"),
    "wrong entry_intents signature": (f"{PATH}:TwoArgumentStrategy", "", "does not take exactly one argument"),
    "constructor wants params, no model": (f"{PATH}:NeedsParamsButNoModel", "", "cannot be called with no arguments"),
    "empty name": (f"{PATH}:NamelessStrategy", "", "its name is ''"),
    "params given to a strategy without a model": (f"{PATH}:RaisingStrategy", '{"x": 1}', "takes no parameters"),
    "Params not a pydantic model": (f"{PATH}:NotAModelParams", "", "not a pydantic model class"),
    "bad parameter value": (f"{PATH}:GreedyStrategy", '{"qty": -5}', "qty: Input should be greater than 0"),
    "params not JSON": ("momentum", "{lookback: 3}", "are not valid JSON"),
    "params not an object": ("momentum", "[3]", "must be a JSON object, got list"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_every_broken_strategy_is_one_line_naming_the_problem_and_the_fix(case: str) -> None:
    spec, params, words = BROKEN[case]
    with pytest.raises(StrategyProblem) as broken:
        load_strategy(spec, params)
    assert words in one_line_with_fix(broken.value)


def test_the_load_time_check_never_runs_the_strategys_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the code location runs at load: a strategy that crashes (or hangs) at import cannot touch it."""
    marker = tmp_path / "imported"
    crash = f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('model file missing')\n"
    (tmp_path / "crashing_strategy.py").write_text(crash)
    package = tmp_path / "heavy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(crash)
    (package / "signals.py").write_text("class Strategy: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check_without_importing("crashing_strategy:Strategy", "").module == "crashing_strategy"
    assert check_without_importing("heavy_pkg.signals:Strategy", "").module == "heavy_pkg.signals"
    with pytest.raises(StrategyProblem, match="is not installed or not on the Python path"):
        check_without_importing("heavy_pkg.missing:Strategy", "")
    assert not marker.exists()
    with pytest.raises(StrategyProblem, match="failed: RuntimeError: model file missing") as crashed:
        load_strategy("crashing_strategy:Strategy")
    assert "fix the error in module 'crashing_strategy'" in one_line_with_fix(crashed.value)
    assert marker.exists()


def test_the_resource_feeds_momentum_its_levels_and_refuses_them_for_other_strategies() -> None:
    assert StrategyConfig(stop_loss_pct=2.0).load().params["stop_loss_pct"] == "2.0"
    assert StrategyConfig(stop_loss_pct=2.0, params='{"stop_loss_pct": 4}').load().params["stop_loss_pct"] == "4"
    with pytest.raises(StrategyProblem, match="stop_loss_pct set on the strategy resource") as refused:
        StrategyConfig(name=f"{PATH}:RaisingStrategy", stop_loss_pct=2.0).load()
    one_line_with_fix(refused.value)
