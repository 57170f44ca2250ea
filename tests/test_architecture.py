"""The import rules, checked on the source: which package may import which, no cycles, and a
light runtime inside model images.

The graph is built with :mod:`ast` from every ``.py`` file under ``src/modelyard``: top-level
imports, imports inside functions and under ``if TYPE_CHECKING:``, relative imports resolved
against their package, and ``importlib.import_module("modelyard...")`` with a literal name. A
function-level import is still a dependency (it only moves the cost), so it counts the same.

A package is the first component under ``modelyard`` (``modelyard.deploy.kubernetes.apply`` is
``deploy``; ``modelyard/config.py`` is ``config``; ``modelyard/__init__.py`` is ``modelyard``).
The README's Architecture section draws :data:`ALLOWED`; change both together.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "modelyard"

# The allowed package edges, bottom to top. Drawn in the README's Architecture section.
BASE = {
    "_version",
    "errors",
    "units",
    "hashing",
    "processes",
    "validation",  # names, aliases, params: the rules shared by library, CLI and API
    "refs",
    "config",
    "httpguard",  # request limits shared by the team server and the model server
    "image_contract",  # port, user and folders of a model image: builder and targets agree
}
STORES = BASE | {"store", "artifacts"}
WORKSPACE = STORES | {"remote", "workspace", "garbage"}
RUNTIME = {"flavors", "serving"}  # the light runtime inside model images
BUILD = {"images"}  # image building (docker, wheelhouses)
# The stages in the loop's order: each may import the ones before it (and everything below).
STAGES = ["data", "tracking", "pipeline", "models", "packaging", "deploy", "monitor", "batch"]


def _after(stage: str) -> set[str]:
    return set(STAGES[: STAGES.index(stage)])


ALLOWED: dict[str, set[str]] = {
    # base: plain helpers, no modelyard state
    "_version": set(),
    "errors": set(),
    "units": {"errors"},
    "hashing": {"errors"},
    "processes": {"errors"},
    "validation": {"errors"},
    "httpguard": set(),
    "image_contract": set(),
    "refs": {"errors", "hashing", "validation"},
    "config": {"errors", "units"},
    # persistence: metadata (SQL) and blobs, side by side; remote is both over HTTP
    "store": BASE,
    "artifacts": BASE,
    "remote": STORES,
    # a workspace hands every stage its stores; garbage collection needs both of them
    "workspace": STORES | {"remote"},
    "garbage": STORES | {"workspace"},
    # the runtime inside model images, and the image builder
    "flavors": BASE,
    "serving": BASE | {"flavors"},
    "images": BASE,
    # the stages
    **{stage: WORKSPACE | RUNTIME | BUILD | _after(stage) for stage in STAGES},
    # above the stages: lineage across all of them, the public API, the server, the CLI
    "lineage": WORKSPACE | set(STAGES),
    "modelyard": WORKSPACE | set(STAGES),
    # re-running what made a model version: every stage, and the wheel of modelyard itself
    "reproduce": WORKSPACE | BUILD | set(STAGES),
    "server": WORKSPACE | RUNTIME | set(STAGES) | {"lineage", "modelyard"},
    "cli": WORKSPACE
    | RUNTIME
    | BUILD
    | set(STAGES)
    | {"lineage", "modelyard", "server", "reproduce"},
    # test doubles shipped for users' tests
    "testing": WORKSPACE | RUNTIME | set(STAGES),
}

# What serving/ and flavors/ (and every modelyard module they reach) may import from outside.
RUNTIME_THIRD_PARTY = {
    "numpy",
    "orjson",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "pyarrow",
    "grpc",  # the V2 gRPC endpoint (serve extra), imported only with --grpc-port
    "google",  # protobuf: the runtime of the committed *_pb2.py
    # the flavor libraries, each present only in the images of its flavor
    "sklearn",
    "skops",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "joblib",
    "scipy",
    "pandas",  # for models whose signature asks for a DataFrame, loaded with such a model
    # the local deploy target's worker class for gunicorn (deploy extra)
    "gunicorn",
    "uvicorn_worker",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module (or top-level name for third-party), dotted
    path: Path
    line: int
    typing_only: bool  # under ``if TYPE_CHECKING:``: annotations, never executed

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of ``name`` that is a module of ours (``a.b.Class`` → ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return name


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node``, with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        yield child, typing_only
        if _is_type_checking(child):
            assert isinstance(child, ast.If)
            for inner in child.body:
                yield inner, True
                yield from _walk(inner, True)
            for inner in child.orelse:
                yield inner, typing_only
                yield from _walk(inner, typing_only)
        else:
            yield from _walk(child, typing_only)


def _imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for node, typing_only in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, _resolve(alias.name, modules), path, node.lineno, typing_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                full = f"{prefix}.{alias.name}"
                target = full if full in modules else _resolve(prefix, modules)
                yield Import(module, target, path, node.lineno, typing_only)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith(ROOT + ".")
        ):
            target = _resolve(node.args[0].value, modules)
            yield Import(module, target, path, node.lineno, typing_only)


@cache
def imports() -> tuple[Import, ...]:
    modules = _modules()
    found: list[Import] = []
    for module, path in modules.items():
        found.extend(_imports_of(module, path, modules))
    return tuple(found)


def package(module: str) -> str | None:
    """The package a dotted module belongs to, or None for a module outside modelyard."""
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    return parts[1] if len(parts) > 1 else ROOT


def _package_edges() -> dict[tuple[str, str], list[Import]]:
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in imports():
        a, b = package(imp.source), package(imp.target)
        if a is None or b is None or a == b:
            continue
        edges.setdefault((a, b), []).append(imp)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe_cycle(component: list[str], edges: dict[tuple[str, str], list[Import]]) -> str:
    members = set(component)
    lines = [f"cycle {{{', '.join(component)}}}:"]
    for (a, b), where in sorted(edges.items()):
        if a in members and b in members:
            lines.append(f"  {a} -> {b}  ({where[0].where()} imports {where[0].target})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def test_the_graph_sees_every_kind_of_import() -> None:
    """The builder finds function-level, TYPE_CHECKING and relative imports (a checker that
    missed them would pass on any tree)."""
    found = {(i.source, i.target) for i in imports()}
    # function-level: the CLI imports its commands' library inside the command functions
    assert any(s.startswith("modelyard.cli.") and package(t) == "deploy" for s, t in found)
    # TYPE_CHECKING: the workspace names Store for the type checker (and imports it later)
    assert any(
        i.source == "modelyard.workspace" and package(i.target) == "store" and i.typing_only
        for i in imports()
    )
    # relative imports resolve to modules of ours, never to a bare name
    assert all(not i.target.startswith(".") for i in imports())
    assert len(imports()) > 500


def test_the_builder_on_a_planted_module(tmp_path: Path) -> None:
    """Each kind of import the rules depend on, planted in one module and found."""
    source = tmp_path / "modelyard" / "deploy" / "planted.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import spec\n"
        "from ..store import core\n"
        "if TYPE_CHECKING:\n"
        "    from modelyard.monitor.check import CheckResult\n"
        "def f():\n"
        "    import importlib\n"
        "    from modelyard.cli import main\n"
        "    importlib.import_module('modelyard.server.app')\n"
    )
    modules = {
        name: source
        for name in [
            "modelyard.deploy.planted",
            "modelyard.deploy.spec",
            "modelyard.store.core",
            "modelyard.monitor.check",
            "modelyard.cli.main",
            "modelyard.server.app",
        ]
    }
    found = {
        (i.target, i.line, i.typing_only)
        for i in _imports_of("modelyard.deploy.planted", source, modules)
        if i.target.startswith(ROOT)
    }
    assert found == {
        ("modelyard.deploy.spec", 2, False),
        ("modelyard.store.core", 3, False),
        ("modelyard.monitor.check", 5, True),
        ("modelyard.cli.main", 8, False),
        ("modelyard.server.app", 9, False),
    }
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_package_is_in_the_table() -> None:
    packages = {package(m) for m in _modules()}
    missing = sorted(p for p in packages if p is not None and p not in ALLOWED)
    assert not missing, f"packages missing from ALLOWED in {__file__}: {missing}"


def test_imports_follow_the_allowed_edges() -> None:
    bad = []
    for (a, b), where in sorted(_package_edges().items()):
        if b not in ALLOWED.get(a, set()):
            bad.extend(f"{i.where()}: {a} -> {b} (imports {i.target})" for i in where)
    assert not bad, "forbidden package edges:\n" + "\n".join(bad)


def test_the_allowed_table_has_no_cycle() -> None:
    assert not _cycles(ALLOWED), _cycles(ALLOWED)


def test_no_package_cycles() -> None:
    edges = _package_edges()
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    cycles = _cycles(graph)
    assert not cycles, "\n".join(_describe_cycle(c, edges) for c in cycles)


def test_no_module_cycles() -> None:
    """Inside a package too, counting imports inside functions (they run, just later). An
    import under ``if TYPE_CHECKING:`` never runs, so two modules may name each other's types;
    the package check above counts those too."""
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in imports():
        if package(imp.target) is None or imp.source == imp.target or imp.typing_only:
            continue
        edges.setdefault((imp.source, imp.target), []).append(imp)
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    cycles = _cycles(graph)
    assert not cycles, "\n".join(_describe_cycle(c, edges) for c in cycles)


def _runtime_violations() -> list[str]:
    stdlib = sys.stdlib_module_names
    by_source: dict[str, list[Import]] = {}
    for imp in imports():
        by_source.setdefault(imp.source, []).append(imp)
    todo = [m for m in _modules() if package(m) in RUNTIME]
    seen = set(todo)
    bad = []
    while todo:
        module = todo.pop()
        for imp in by_source.get(module, []):
            top = imp.target.split(".")[0]
            if package(imp.target) is not None:
                if package(imp.target) not in RUNTIME | BASE and imp.target != ROOT:
                    bad.append(f"{imp.where()}: {module} -> {imp.target} (not runtime)")
                elif imp.target not in seen:
                    seen.add(imp.target)
                    todo.append(imp.target)
            elif top not in stdlib and top not in RUNTIME_THIRD_PARTY:
                bad.append(f"{imp.where()}: {module} -> {imp.target} (not in the runtime set)")
    return sorted(bad)


def test_the_runtime_imports_only_the_runtime_set() -> None:
    """serving/ and flavors/ run inside model images with the `serve` extra and the flavor's
    library: they, and every modelyard module they reach, import only those."""
    bad = _runtime_violations()
    assert not bad, "\n".join(bad)
