"""The house keeps its floor plan (README, "Layout"): readable rooms, one-way imports, no circles."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("api", "workers", "orchestration", "ledger", "assistant", "payments", "runtime", "cli")
MAX_MODULES = 20
MAX_LINES = 330  # "about 300"
CONFIG = ("celeryconfig",)


def _modules() -> dict[str, Path]:
    found = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    found["celeryconfig"] = ROOT / "celeryconfig.py"
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Our modules that `path` imports, at its top or inside a function (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    hidden = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    imported: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # `from pkg import module` needs the module, not all of pkg
                full = f"{node.module}.{alias.name}"
                imported.add(full if full in MODULES else node.module)
    return {name for name in imported if name in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_no_module_imports_its_way_back_to_itself() -> None:
    # Function-local imports count: a circle closed inside a function is still a circle to a reader.
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module)


@pytest.mark.parametrize(
    ("layer", "may_import"),
    [
        ("runtime", {"runtime"}),
        ("celeryconfig", {"runtime"}),
        ("ledger", {"ledger", "runtime"}),
        ("payments", {"payments", "runtime", "ledger"}),
        ("assistant", {"assistant", "runtime", "ledger"}),
        ("orchestration", {"orchestration", "assistant", "payments", "ledger", "runtime", *CONFIG}),
        ("workers", {"workers", "orchestration", "assistant", "payments", "ledger", "runtime", *CONFIG}),
        ("api", {"api", "orchestration", "assistant", "payments", "ledger", "runtime", *CONFIG}),
    ],
)
def test_imports_go_one_way(layer: str, may_import: set[str]) -> None:
    wrong = [
        (module, target)
        for module, targets in GRAPH.items()
        if module.split(".")[0] == layer
        for target in targets
        if target.split(".")[0] not in may_import
    ]
    assert wrong == []


def test_the_ledger_knows_no_framework() -> None:
    for path in (ROOT / "ledger").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module}
        assert not names & {"flask", "celery", "redis", "stripe", "kombu"}, path


def test_rooms_are_of_a_readable_size_and_say_what_they_own() -> None:
    for layer in LAYERS:
        for folder in [ROOT / layer, *(p for p in (ROOT / layer).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or "static" in folder.relative_to(ROOT).parts:
                continue  # static assets (api/ui/static) are files served, not a package
            modules = [p.stem for p in folder.glob("*.py") if p.name != "__init__.py"]
            assert len(modules) <= MAX_MODULES, (folder, len(modules))
            prefixes = Counter(name.split("_")[0] for name in modules if "_" in name)
            families = {prefix: n for prefix, n in prefixes.items() if n >= 3}
            assert not families, (folder, families)
            init = folder / "__init__.py"
            assert init.exists(), folder
            assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"


def test_modules_stay_short() -> None:
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in MODULES.values()}
    long = {path: n for path, n in lengths.items() if n > MAX_LINES}
    assert long == {}
