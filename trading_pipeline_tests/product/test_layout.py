"""The package's layout, as README "Architecture" draws it: one package per concern, dependencies pointing one
way, no import circle, no loose module at the top, no module too long to read.

Imports are read from the source (every `import` / `from … import`, also inside functions and TYPE_CHECKING
blocks), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trading_pipeline

PACKAGE = Path(trading_pipeline.__file__).parent
ROOT_NAME = "trading_pipeline"
MAX_LINES = 400
TOP_LEVEL_MODULES = {"__init__.py", "definitions.py", "settings.py"}

# Lowest first. A module may import its own package and any package of a lower layer, never a higher one
# nor another package of its own layer. `sim` stands apart: it may import only `domain`.
LAYERS: list[set[str]] = [
    {"domain", "settings", "__init__"},
    {"broker", "store"},
    {"resources"},
    {"steps"},
    {"monitoring"},
    {"checks"},
    {"assets"},
    {"automation"},
    {"definitions"},
    {"harness"},
    {"cli"},
]
SIM_MAY_IMPORT = {"sim", "domain"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if "migrations" in relative.parts:
            continue
        parts = [ROOT_NAME, *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The product modules `name` imports (a `from package import module` counts as the module)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                targets.add(candidate if candidate in MODULES else module)
    return {t for t in targets if t == ROOT_NAME or t.startswith(ROOT_NAME + ".")}


GRAPH = {name: {t for t in _imports(name, path) if t != name} for name, path in MODULES.items()}


def _concern(module: str) -> str:
    """`trading_pipeline.steps.closes` → `steps`; `trading_pipeline` itself → `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(concern: str) -> int:
    for index, layer in enumerate(LAYERS):
        if concern in layer:
            return index
    raise AssertionError(f"package {concern!r} is in no layer of this test: add it to LAYERS (and README)")


def test_every_package_has_a_layer() -> None:
    for module in MODULES:
        if _concern(module) != "sim":
            _layer(_concern(module))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        source = _concern(module)
        for target in targets:
            dest = _concern(target)
            if dest == source:
                continue
            if source == "sim":
                ok = dest in SIM_MAY_IMPORT
            elif dest == "sim":
                ok = source in {"harness", "cli"}  # only the drivers start the sim; the product talks HTTP
            else:
                ok = _layer(dest) < _layer(source)
            if not ok:
                wrong.append(f"{module} → {target}")
    return sorted(wrong)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: every one with more than one module is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_dependencies_point_one_way() -> None:
    wrong = upward_imports(GRAPH)
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_import_circle() -> None:
    assert not circles(GRAPH), f"import circles: {circles(GRAPH)}"


def test_the_layout_checks_can_fail() -> None:
    """An invented upward import, a product import in the sim, and an invented circle are each reported."""
    steps, assets, sim = "trading_pipeline.steps.x", "trading_pipeline.assets.y", "trading_pipeline.sim.z"
    assert upward_imports({steps: {assets}, assets: {steps}}) == [f"{steps} → {assets}"]
    assert upward_imports({sim: {"trading_pipeline.store.w"}}) == [f"{sim} → trading_pipeline.store.w"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_loose_module_at_the_top() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert not loose, f"loose modules at the top of trading_pipeline/ (put each in its package): {loose}"


def test_no_module_too_long_to_read() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in MODULES.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them along a seam you can name): {long}"
