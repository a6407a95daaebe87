"""Finding and making the configured entry strategy, with one-line errors that name the problem and the fix.

A strategy is selected by a built-in name (`momentum`), by the name of an entry point in the group
`trading_pipeline.strategies` (what an installed strategy package declares), or by an import path
`package.module:attribute`. Its JSON parameters are validated by its own `Params` model (pydantic).

`check_without_importing` is what the code location runs when it loads: it resolves the name and finds the
module on the path without executing any of the strategy's code, so a strategy module that is slow, hangs or
crashes at import can never delay or break the location that also runs the stop-loss sweeps. `load_strategy`
imports it, checks its shape and parameters and makes it: the pre-flight, the start of a trading-day run
and the `entries` step call it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from trading_pipeline.domain.strategy import (
    MAX_BARS_LOOKBACK_DAYS,
    MAX_NAME_LENGTH,
    EntryStrategy,
    StrategyProblem,
    UnknownStrategy,
)

ENTRY_POINT_GROUP = "trading_pipeline.strategies"
BUILT_IN = {"momentum": "trading_pipeline.domain.strategy_momentum:MomentumStrategy"}
DEFAULT_STRATEGY = "momentum"
PARAMS_ORIGIN = "the strategy params (TRADING_PIPELINE_STRATEGY_PARAMS, or `params` of the strategy resource)"
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
IMPORT_PATH = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
MAX_DETAIL = 240  # an exception's text is cut here: the line must stay one readable line


@dataclass(frozen=True, slots=True)
class Selection:
    spec: str  # as configured
    module: str
    attribute: str
    source: str  # "built-in", "entry point of <distribution>", "import path"

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attribute}"


@dataclass(frozen=True, slots=True)
class LoadedStrategy:
    strategy: EntryStrategy
    selection: Selection
    params: dict[str, Any]  # as validated by the strategy's Params, JSON-ready

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.strategy.name,
            "selected_as": self.selection.spec,
            "target": self.selection.target,
            "source": self.selection.source,
            "params": self.params,
            "bars_lookback_days": _lookback(self.strategy),
        }


def _problem(spec: str, what: str, fix: str, kind: type[StrategyProblem] = StrategyProblem) -> StrategyProblem:
    return kind(f"entry strategy {spec!r}: {what} — {fix}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_params(params: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters as a JSON object; StrategyProblem when they are not one."""
    if params is None or (isinstance(params, str) and not params.strip()):
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    try:
        value = json.loads(params)
    except json.JSONDecodeError as exc:
        raise StrategyProblem(
            f"{PARAMS_ORIGIN} are not valid JSON ({exc.msg} at char {exc.pos}) — give a JSON object such as "
            '{"lookback_days": 5}, or leave them empty for the defaults'
        ) from None
    if not isinstance(value, dict):
        raise StrategyProblem(
            f"{PARAMS_ORIGIN} must be a JSON object, got {type(value).__name__} — give an object such as "
            '{"lookback_days": 5}, or leave them empty for the defaults'
        )
    return value


def known_names() -> list[str]:
    names = set(BUILT_IN)
    names.update(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def resolve(spec: str) -> Selection:
    """Which module and attribute `spec` means — without importing anything of the strategy."""
    spec = (spec or "").strip()
    if not spec:
        spec = DEFAULT_STRATEGY
    if ":" in spec:
        match = IMPORT_PATH.match(spec)
        if match is None:
            raise _problem(
                spec,
                "is not an import path of the form package.module:attribute",
                "fix TRADING_PIPELINE_STRATEGY (e.g. my_strategies.breakout:BreakoutStrategy) or use a "
                f"registered name ({', '.join(known_names())})",
            )
        return Selection(spec, match.group(1), match.group(2), "import path")
    points = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    targets = {f"{ep.module}:{ep.attr}": ep for ep in points}
    if spec in BUILT_IN:
        if any(target != BUILT_IN[spec] for target in targets):
            owners = ", ".join(_distribution(ep) for ep in points)
            raise _problem(
                spec,
                f"is the built-in strategy, and also an entry point of {owners}",
                "rename that entry point in its package's pyproject.toml, or select it by import path",
            )
        module, attribute = BUILT_IN[spec].split(":")
        return Selection(spec, module, attribute, "built-in")
    if not targets:
        raise _problem(
            spec,
            "unknown strategy: neither built-in nor registered in the entry-point group "
            f"{ENTRY_POINT_GROUP} (known strategies: {', '.join(known_names())})",
            "install the package that registers it (pip install -e path/to/package), fix the name, or give "
            "an import path package.module:attribute",
            UnknownStrategy,
        )
    if len(targets) > 1:
        owners = "; ".join(f"{target} from {_distribution(ep)}" for target, ep in sorted(targets.items()))
        raise _problem(
            spec,
            f"is registered by more than one package ({owners})",
            "uninstall one of them, or select the strategy by import path package.module:attribute",
        )
    [(target, point)] = targets.items()
    module, attribute = target.split(":")
    return Selection(spec, module, attribute, f"entry point of {_distribution(point)}")


def _distribution(point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unnamed distribution"


def check_without_importing(spec: str, params: str | Mapping[str, Any] | None) -> Selection:
    """What can be checked without running the strategy's code: the name, the module on the path, and
    parameters that are a JSON object. Raises StrategyProblem."""
    selection = resolve(spec)
    if not _module_findable(selection.module):
        raise _problem(
            selection.spec,
            f"module {selection.module!r} is not installed or not on the Python path",
            "install its package into this environment (pip install -e path/to/package) or fix the module path",
        )
    parse_params(params)
    return selection


def _module_findable(module: str) -> bool:
    """Like importlib.util.find_spec, but never executes a package's __init__ to look inside it."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        for depth in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return False
            name = ".".join(parts[: depth + 1])
            if name in sys.modules:
                spec = sys.modules[name].__spec__
                continue
            spec = importlib.machinery.PathFinder.find_spec(name, list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return False
    return spec is not None


def load_strategy(spec: str, params: str | Mapping[str, Any] | None = None) -> LoadedStrategy:
    """Import, check and make the strategy; StrategyProblem (one line: the problem and the fix) otherwise."""
    selection = resolve(spec)
    raw_params = parse_params(params)
    factory = _import_target(selection)
    model, params_model = _validated_params(selection, factory, raw_params)
    strategy = _make(selection, factory, params_model)
    _check_shape(selection, strategy)
    return LoadedStrategy(strategy, selection, model)


def _import_target(selection: Selection) -> Any:
    spec = selection.spec
    try:
        target: Any = importlib.import_module(selection.module)
    except (Exception, SystemExit) as exc:  # the strategy's own import-time code may raise anything
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        module = selection.module
        if missing and (module == missing or module.startswith(missing + ".")):
            fix = "install its package into this environment (pip install -e path/to/package) or fix the module path"
        elif missing:
            fix = f"install {missing!r}, which {module!r} imports, into this environment"
        else:
            fix = f"fix the error in module {module!r} (import it in Python to see the traceback)"
        raise _problem(spec, f"importing module {selection.module!r} failed: {_one_line(exc)}", fix) from None
    for part in selection.attribute.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in dir(target) if not n.startswith("_") and n[:1].isupper())[:8]
            hint = f" (it has: {', '.join(public)})" if public else ""
            raise _problem(
                spec,
                f"{selection.module!r} has no attribute {selection.attribute!r}{hint}",
                "fix the name after ':' (in TRADING_PIPELINE_STRATEGY or the package's entry point)",
            )
        target = getattr(target, part)
    if not callable(target):
        raise _problem(
            spec,
            f"{selection.target} is a {type(target).__name__}, not a class",
            "point at the strategy class (or a function that returns the strategy)",
        )
    return target


def _validated_params(selection: Selection, factory: Any, raw: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    spec = selection.spec
    schema = getattr(factory, "Params", None)
    if schema is None:
        if raw:
            raise _problem(
                spec,
                f"takes no parameters (it has no Params model) but got {', '.join(sorted(raw))}",
                "remove them from the strategy params, or give the strategy a Params model",
            )
        return {}, None
    if not (isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)):
        raise _problem(
            spec,
            f"its Params is a {type(schema).__name__}, not a pydantic model class",
            "make Params a subclass of pydantic.BaseModel",
        )
    if schema.model_config.get("extra") != "allow":
        known = set(schema.model_fields) | {f.alias for f in schema.model_fields.values() if f.alias}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise _problem(
                spec,
                f"unknown parameter(s) {', '.join(unknown)} (it takes: {', '.join(sorted(schema.model_fields))})",
                f"fix or remove them in {PARAMS_ORIGIN}",
            )
    try:
        validated = schema.model_validate(raw)
    except pydantic.ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise _problem(spec, f"bad parameter(s): {details}", f"fix them in {PARAMS_ORIGIN}") from None
    return validated.model_dump(mode="json"), validated


def _make(selection: Selection, factory: Any, params_model: Any) -> Any:
    args = () if params_model is None else (params_model,)
    try:
        inspect.signature(factory).bind(*args)
    except TypeError as exc:
        wanted = "its validated Params as the one argument" if args else "no arguments"
        raise _problem(
            selection.spec,
            f"{selection.target} cannot be called with {wanted} ({exc})",
            "give it __init__(self, params) when it has a Params model, __init__(self) otherwise",
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): calling it is the test
    try:
        return factory(*args)
    except Exception as exc:  # the strategy's constructor is user code
        raise _problem(
            selection.spec, f"creating it failed: {_one_line(exc)}", "fix its constructor or its parameters"
        ) from None


def _check_shape(selection: Selection, strategy: Any) -> None:
    spec = selection.spec
    name = getattr(strategy, "name", None)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise _problem(
            spec,
            f"its name is {name!r}",
            f"give the strategy a `name`: a non-empty string of at most {MAX_NAME_LENGTH} characters",
        )
    lookback = _lookback(strategy)
    if isinstance(lookback, bool) or not isinstance(lookback, int) or not 0 <= lookback <= MAX_BARS_LOOKBACK_DAYS:
        raise _problem(
            spec,
            f"bars_lookback_days is {lookback!r}",
            f"make it a whole number of sessions from 0 (no bars) to {MAX_BARS_LOOKBACK_DAYS}",
        )
    method = getattr(strategy, "entry_intents", None)
    if not callable(method):
        raise _problem(
            spec,
            "has no entry_intents method",
            "define entry_intents(self, inputs) returning a list of EntryIntent (see domain/strategy.py)",
        )
    try:
        inspect.signature(method).bind(object())
    except TypeError:
        raise _problem(
            spec,
            f"entry_intents{inspect.signature(method)} does not take exactly one argument",
            "define it as entry_intents(self, inputs): inputs is the StrategyInputs of the day",
        ) from None
    except ValueError:
        pass


def _lookback(strategy: Any) -> Any:
    return getattr(strategy, "bars_lookback_days", 0)
