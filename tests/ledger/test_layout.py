"""The layout holds: SQL dialects stay in ledger/store/, psycopg loads only for PostgreSQL.

Read from the source (the AST), so a new dialect test, a backend import or an import cycle is
caught where it is written, not when some backend happens to run it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("ledger", "projections", "streams", "ckl")
STORE = ROOT / "ledger" / "store"
BACKEND_NAMES = {"sqlite", "sqlite3", "postgres", "postgresql", "psycopg", "memory"}
# Modules only ledger/store/ may import: the drivers, and the backends themselves.
BACKEND_MODULES = (
    "psycopg",
    "psycopg_pool",
    "sqlite3",
    "ledger.store.sqlite",
    "ledger.store.postgres",
)


def _sources(*packages: str) -> list[Path]:
    return sorted(
        path
        for package in packages
        if (ROOT / package).is_dir()
        for path in (ROOT / package).rglob("*.py")
    )


def _outside_store() -> list[Path]:
    return [path for path in _sources(*FIRST_PARTY) if STORE not in path.parents]


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dialect_tests(tree: ast.AST) -> list[str]:
    """Each place that compares a backend name, keys SQL by one, or reads ``.dialect``."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "dialect":
            found.append(f"line {node.lineno}: .dialect")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            values = [
                value
                for side in sides
                for value in (
                    side.elts if isinstance(side, ast.Set | ast.Tuple | ast.List) else [side]
                )
            ]
            found.extend(
                f"line {node.lineno}: compares with {value.value!r}"
                for value in values
                if isinstance(value, ast.Constant) and value.value in BACKEND_NAMES
            )
        elif isinstance(node, ast.Dict):
            found.extend(
                f"line {node.lineno}: a dict keyed by {key.value!r}"
                for key in node.keys
                if isinstance(key, ast.Constant) and key.value in BACKEND_NAMES
            )
    return found


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:`` (not imported at run time)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def _imports(path: Path, tree: ast.AST) -> list[tuple[str, ast.Import | ast.ImportFrom]]:
    """The modules ``path`` imports at run time, with the statement that does."""
    skipped = _type_checking_blocks(tree)
    out: list[tuple[str, ast.Import | ast.ImportFrom]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.extend((alias.name, node) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _module(path).split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*candidate.split("."))
                ).is_dir()
                out.append((candidate if is_module else base, node))
    return out


def _function_level(tree: ast.AST) -> set[int]:
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner.update(id(child) for child in ast.walk(node) if child is not node)
    return inner


def test_no_dialect_test_outside_the_store() -> None:
    offenders = {
        _name(path): found
        for path in _outside_store()
        if (found := _dialect_tests(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_dialect_check_sees_what_it_looks_for() -> None:
    probe = ast.parse('if tx.dialect == "postgres": pass\nx = {"sqlite": "A", "postgres": "B"}')
    assert len(_dialect_tests(probe)) == 4
    assert _dialect_tests(ast.parse("kind = store.kind\nok = name == 'other'")) == []


def test_only_the_store_imports_drivers_and_backends() -> None:
    offenders = [
        f"{_name(path)}: {module}"
        for path in _outside_store()
        for module, _ in _imports(path, ast.parse(path.read_text()))
        if module.startswith(BACKEND_MODULES)
    ]
    assert offenders == []


def test_the_store_base_imports_no_backend() -> None:
    for name in ("__init__.py", "base.py", "backends.py", "pool.py", "url.py"):
        path = STORE / name
        modules = [module for module, _ in _imports(path, ast.parse(path.read_text()))]
        assert not [m for m in modules if m.startswith(BACKEND_MODULES)], name


def test_ledger_and_projections_import_no_first_party_module_inside_a_function() -> None:
    # The one run-time lookup, ledger.store.backends, goes through importlib by module path.
    offenders = []
    for path in _sources("ledger", "projections"):
        tree = ast.parse(path.read_text())
        inner = _function_level(tree)
        offenders += [
            f"{_name(path)}:{node.lineno} {module}"
            for module, node in _imports(path, tree)
            if id(node) in inner and module.split(".")[0] in FIRST_PARTY
        ]
    assert offenders == []


def _import_graph() -> dict[str, set[str]]:
    """First-party module -> the first-party modules it imports at run time (any level)."""
    paths = _sources(*FIRST_PARTY)
    modules = {_module(path) for path in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        importer = _module(path)
        graph[importer] = {
            module
            for module, _ in _imports(path, ast.parse(path.read_text()))
            if module in modules and module != importer
        }
    return graph


def test_each_layer_imports_only_the_layers_below_it() -> None:
    # ckl -> streams -> projections -> ledger (FIRST_PARTY lists them bottom-up)
    rank = {package: n for n, package in enumerate(FIRST_PARTY)}
    upward = [
        f"{importer} imports {module}"
        for importer, modules in _import_graph().items()
        for module in modules
        if rank[module.split(".")[0]] > rank[importer.split(".")[0]]
    ]
    assert upward == []


def test_no_import_cycle_at_any_level() -> None:
    # Function-level imports count (only `if TYPE_CHECKING:` blocks are left out), in every layer.
    graph = _import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("package", ["ledger", "projections"])
def test_importing_and_using_a_sqlite_store_loads_no_psycopg(package: str, tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import {package}
        from ledger import Ledger
        from projections import Projections

        with Ledger.open({f"sqlite:///{tmp_path / 'layout.db'}"!r}) as ledger:
            ledger.create_checkpoint("layout", 0)
            with Projections(ledger) as views:
                views.sync()
        print(sorted(m for m in sys.modules if m.split(".")[0] in {{"psycopg", "psycopg_pool"}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "[]", out.stderr
