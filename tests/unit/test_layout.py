"""The layout's rules, checked on the source (docs/architecture.md states them and their exceptions).

- no import cycle between the project's modules (lazy imports inside functions count too);
- no module imports another package's underscore names (``from models.base import _x``, ``bb._count``);
- no function over 60 lines in the compute core.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ("explainers", "models", "evaluation", "runtime", "study", "maps")
PACKAGES = CORE + ("ui", "views", "cli")
MAX_LINES = 60


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")) if (ROOT / pkg).is_dir() else ():
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports (``from pkg import mod`` resolves to the module when it is one)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_no_import_cycle():
    mods = modules()
    known = set(mods)
    # a package's __init__ re-exporting its own modules is not a cycle of the layout: drop pkg -> pkg.child edges
    graph = {n: {m for m in imports_of(n, p, known) if not m.startswith(n + ".")} for n, p in mods.items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_private_names_across_packages():
    bad = []
    for name, path in modules().items():
        pkg = name.split(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                other = node.module.split(".")[0]
                if other != pkg and other in PACKAGES:
                    bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_")]
                if other != pkg and other in PACKAGES and any(p.startswith("_") for p in node.module.split(".")):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
            # bb._method(...) on an object from another package: a private attribute on a black box
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in ("bb", "blackbox", "model")
                    and pkg != "models"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, "private names used across packages:\n" + "\n".join(bad)


@pytest.mark.parametrize("pkg", CORE)
def test_core_functions_are_short(pkg):
    long = []
    for path in sorted((ROOT / pkg).rglob("*.py")) if (ROOT / pkg).is_dir() else ():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {n} lines")
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(long)


# Data flows top to bottom: a package imports only packages of its own layer or below (lazy imports included).
LAYERS = (("maps", "models"), ("explainers",), ("evaluation",), ("runtime",), ("study", "cli"), ("ui",), ("views",))


def test_packages_import_only_downwards():
    layer = {pkg: i for i, group in enumerate(LAYERS) for pkg in group}
    mods = modules()
    bad = [f"{mods[n].relative_to(ROOT)} ({n.split('.')[0]}) imports {m} ({m.split('.')[0]})"
           for n, p in mods.items() for m in sorted(imports_of(n, p, set(mods)))
           if layer[m.split(".")[0]] > layer[n.split(".")[0]]]
    assert not bad, "imports against the flow:\n" + "\n".join(bad)


def test_no_page_shadows_a_package():
    """A page runs with views/ on sys.path: a views/models.py would be imported as the ``models`` package."""
    pages = {p.stem for p in (ROOT / "views").glob("*.py")}
    assert not pages & set(PACKAGES), f"pages named like packages: {sorted(pages & set(PACKAGES))}"
