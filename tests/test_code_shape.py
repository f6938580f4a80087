"""The shape the code keeps: short functions, subpackages by concept, imports that run one way.

Modules are cut by concept, not by length (a limit on module lines pushed concepts apart
and comments out); what is checked instead is the import graph, read with ``ast`` from
every module, imports inside functions included (they are imports all the same, only
later), ``if TYPE_CHECKING:`` blocks left out (they never run). ``lint-imports``
(import-linter, ``pyproject.toml``) checks the layer order between subpackages in CI; the
tests here check what it does not: no cycle between *modules*, no private name crossing
a subpackage boundary, no module-level ``__getattr__`` redirects, a small top level.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "spherevae"
MAX_FUNCTION_LINES = 80
MAX_TOP_LEVEL_MODULES = 8


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    return skip


def _imports(name: str, path: Path) -> Iterator[tuple[str, str | None, int]]:
    """``(module imported, name taken from it or None, line)`` of every import in ``path``."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a ``from pkg import sub`` is ``pkg.sub``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, attr, _ in _imports(name, path):
            if attr is not None and f"{target}.{attr}" in modules:
                target = f"{target}.{attr}"
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    # The instrument first: a loop a -> b -> c -> a is found, a chain is not.
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    assert len(graph) > 60  # the walk found the package
    assert find_cycles(graph) == []


def test_no_import_cycle_between_subpackages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        top = ".".join(module.split(".")[:2])
        packages.setdefault(top, set()).update(
            ".".join(t.split(".")[:2]) for t in targets if ".".join(t.split(".")[:2]) != top)
    assert find_cycles(packages) == []


def test_no_private_name_crosses_a_subpackage() -> None:
    crossing = []
    for name, path in _modules().items():
        for target, attr, line in _imports(name, path):
            if not target.startswith("spherevae") or attr is None:
                continue
            private = attr.startswith("_") and not attr.startswith("__")
            if private and target.split(".")[:2] != name.split(".")[:2]:
                crossing.append(f"{path.relative_to(SRC)}:{line} {target}.{attr}")
    assert not crossing, "private names imported across subpackages: " + ", ".join(crossing)


def test_no_module_level_getattr_redirects() -> None:
    # PEP 562 redirects for moved names tie import cycles; only the package's own lazy
    # face (spherevae/__init__.py: `import spherevae` stays as light as the core) has one.
    shims = [
        str(path.relative_to(SRC)) for name, path in _modules().items()
        if name != "spherevae"
        and any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(path.read_text()).body)
    ]
    assert not shims


def test_few_modules_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("package", sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()))
def test_every_subpackage_says_what_lives_there(package: str) -> None:
    tree = ast.parse((PACKAGE / package / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and len(doc) > 80, f"spherevae.{package} needs a docstring saying what lives there"


def test_no_function_longer_than_the_limit() -> None:
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over the limit: " + ", ".join(long)
