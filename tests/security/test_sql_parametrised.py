"""SQL is only ever parametrised: an AST scan of ledger/, projections/, streams/ and ckl/.

Every ``execute(…)``, ``executemany(…)`` and ``query(…)`` call's SQL argument must be built only
from string literals and our own constants: module-level names, ``self`` attributes and local
variables whose every assignment is itself built that way, placeholders repeated by a count
(``'?' * n``), ``quote_identifier(…)`` and psycopg's ``sql.SQL(…).format(sql.Identifier(…))``.
Values always travel as parameters. Anything else is a finding, unless it is in the short,
reviewed ``ALLOWED`` list below (each with its reason); a stale entry fails too.

The scanner is tested on snippets first, so it is known to fail on what it should.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "projections", "streams", "ckl")
SQL_METHODS = {"execute", "executemany", "query", "_query", "query_for_update"}
WRAPPERS = {"execute", "executemany", "query", "_query", "query_for_update"}
SAFE_CALLS = {"quote_identifier", "Identifier", "Literal", "Placeholder"}

# (file, function, reason): interpolations the scanner cannot prove, reviewed by hand.
ALLOWED: dict[tuple[str, str], str] = {
    ("projections/runner.py", "_rebuild_tables"): (
        "DROP TABLE of each view's `tables` and each view's `ddl` (class constants)"
    ),
    ("projections/runner.py", "_create_tables"): "each view's `ddl` (class constants)",
    # The page writer prepares its statements once, in PageWriter.__init__, from the view
    # modules' table names and its own column constants; every value is a %s parameter.
    ("projections/fold.py", "_read_rows"): "PageWriter's prepared SELECT (constants)",
    ("projections/fold.py", "_store"): "PageWriter's prepared DELETE and UPDATE (constants)",
    ("projections/fold.py", "_write"): "one of PageWriter's prepared bulk INSERTs (constants)",
    # Filters appended as literal text; lists as one %s per value, never their values.
    ("projections/timeline.py", "timeline"): "literal filter clauses and %s placeholders",
}


@dataclass
class Scope:
    """What the scanner knows where a call is: module names, class attributes, the function."""

    module: dict[str, list[ast.expr]]
    imported: set[str]
    attributes: dict[str, list[ast.expr]] = field(default_factory=dict)
    function: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    locals: dict[str, list[ast.expr]] = field(default_factory=dict)
    loops: dict[str, list[ast.expr]] = field(default_factory=dict)
    params: set[str] = field(default_factory=set)
    trusted: set[str] = field(default_factory=set)  # parameters proven safe at every call


def _assignments(  # noqa: C901  (one branch per way Python binds a name)
    body: list[ast.stmt] | ast.AST, *, nested: bool
) -> dict[str, list[ast.expr]]:
    found: dict[str, list[ast.expr]] = {}
    nodes = ast.walk(body) if nested else iter(body)  # type: ignore[arg-type]
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node.value)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for t, v in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(t, ast.Name):
                            found.setdefault(t.id, []).append(v)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            if node.value is not None:
                found.setdefault(node.target.id, []).append(node.value)
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr in {"append", "extend"}
            and isinstance(node.value.func.value, ast.Name)
            and node.value.args
        ):
            # where.append("x = %s") builds a list of clauses joined later
            found.setdefault(node.value.func.value.id, []).append(node.value.args[0])
    return found


def _self_attributes(cls: ast.ClassDef) -> dict[str, list[ast.expr]]:
    found: dict[str, list[ast.expr]] = {}
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    found.setdefault(target.attr, []).append(node.value)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Call):
                    for t in target.elts:  # self._a, self._b = _make_sql(...)
                        if isinstance(t, ast.Attribute):
                            found.setdefault(t.attr, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found.setdefault(node.target.id, []).append(node.value)
    return found


class Checker:
    """Decides whether an expression is built only from literals and our own constants."""

    def __init__(self, scope: Scope, functions: dict[str, ast.FunctionDef]) -> None:
        self.scope = scope
        self.functions = functions
        self._busy: set[int] = set()

    def safe(self, node: ast.expr) -> bool:  # noqa: C901, PLR0911, PLR0912
        if id(node) in self._busy:
            return True  # a cycle (x += …): judged by its other parts
        self._busy.add(id(node))
        try:
            if isinstance(node, ast.Constant):
                return isinstance(node.value, str | bytes | int | float) or node.value is None
            if isinstance(node, ast.JoinedStr):
                return all(
                    self.safe(v.value) if isinstance(v, ast.FormattedValue) else True
                    for v in node.values
                )
            if isinstance(node, ast.BinOp):
                if isinstance(node.op, ast.Add):
                    return self.safe(node.left) and self.safe(node.right)
                if isinstance(node.op, ast.Mult):  # "?" * len(values): placeholders, not values
                    return any(
                        isinstance(side, ast.Constant) and isinstance(side.value, str)
                        for side in (node.left, node.right)
                    ) or (self.safe(node.left) and self.safe(node.right))
                return False  # "%" formatting and the rest
            if isinstance(node, ast.IfExp):
                return self.safe(node.body) and self.safe(node.orelse)
            if isinstance(node, ast.List | ast.Tuple | ast.Set):
                return all(self.safe(e) for e in node.elts if not isinstance(e, ast.Starred))
            if isinstance(node, ast.Dict):
                return all(self.safe(v) for v in node.values if v is not None)
            if isinstance(node, ast.ListComp | ast.GeneratorExp):
                return self.safe(node.elt)
            if isinstance(node, ast.Name):
                return self._name(node.id)
            if isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name) and node.value.id == "self":
                    values = self.scope.attributes.get(node.attr, [])
                    return bool(values) and all(self.safe(v) for v in values)
                return node.attr.isupper() and self.safe(node.value)
            if isinstance(node, ast.Subscript):
                return self.safe(node.value)  # a constant table indexed by anything
            if isinstance(node, ast.Call):
                return self._call(node)
            return False
        finally:
            self._busy.discard(id(node))

    def _name(self, name: str) -> bool:
        scope = self.scope
        if name in scope.loops:
            return all(self.safe(v) for v in scope.loops[name])
        if name in scope.locals:
            return all(self.safe(v) for v in scope.locals[name])
        if name in scope.params:
            return name in scope.trusted
        if name in scope.module:
            return all(self.safe(v) for v in scope.module[name])
        return name in scope.imported and name.isupper()

    def _call(self, node: ast.Call) -> bool:  # noqa: PLR0911  (one answer per call shape)
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in SAFE_CALLS or name == "len":
            return True
        if isinstance(func, ast.Attribute):
            if name in {"encode", "strip", "removeprefix"}:
                return self.safe(func.value)
            if name == "replace":
                return self.safe(func.value) and all(self.safe(a) for a in node.args)
            if name == "join":
                return self.safe(func.value) and all(self.safe(a) for a in node.args)
            if name == "format":  # only psycopg's sql.SQL("…").format(sql.Identifier(…))
                inner = func.value
                return (
                    isinstance(inner, ast.Call)
                    and getattr(inner.func, "attr", "") == "SQL"
                    and all(self.safe(a) for a in [*inner.args, *node.args])
                )
            if name == "SQL":
                return all(self.safe(a) for a in node.args)
        if name in self.functions:  # a module function returning SQL built from constants
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if not all(self.safe(a) for a in arguments):
                return False
            returns = [
                r.value
                for r in ast.walk(self.functions[name])
                if isinstance(r, ast.Return) and r.value is not None
            ]
            return bool(returns) and self._function_returns_safe(self.functions[name], returns)
        return False

    def _function_returns_safe(self, function: ast.FunctionDef, returns: list[ast.expr]) -> bool:
        params = {a.arg for a in function.args.args}
        inner = Scope(
            module=self.scope.module,
            imported=self.scope.imported,
            function=function,
            locals=_assignments(function, nested=True),
            params=params,
            trusted=params,  # the call's arguments were checked by the caller (_call)
        )
        checker = Checker(inner, self.functions)
        checker._busy = self._busy
        return all(checker.safe(r) for r in returns)


def scan_source(  # noqa: C901  (the scope bookkeeping of one walk)
    source: str, filename: str
) -> list[tuple[str, int, str]]:
    """Findings ``(function, line, source of the SQL argument)`` of one module."""
    tree = ast.parse(source, filename)
    module = _assignments(tree.body, nested=False)
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    findings: list[tuple[str, int, str]] = []
    calls: dict[str, list[ast.Call]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            calls.setdefault(called, []).append(node)
    constants = Checker(Scope(module, imported), functions)

    def _safe_at_every_call(function: ast.FunctionDef | ast.AsyncFunctionDef, param: str) -> bool:
        """A helper's parameter is trusted when every call in the module passes a constant."""
        positional = [a.arg for a in [*function.args.posonlyargs, *function.args.args]]
        if positional and positional[0] == "self":
            positional = positional[1:]
        sites = calls.get(function.name, [])
        if not sites:
            return False
        for site in sites:
            given = [k.value for k in site.keywords if k.arg == param]
            if param in positional and positional.index(param) < len(site.args):
                given.append(site.args[positional.index(param)])
            if not all(constants.safe(g) for g in given):
                return False
        return True

    def visit(node: ast.AST, scope: Scope) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, Scope(module, imported, attributes=_self_attributes(child)))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                args = child.args
                params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
                loops: dict[str, list[ast.expr]] = {}
                for loop in ast.walk(child):
                    if isinstance(loop, ast.For | ast.comprehension) and isinstance(
                        loop.target, ast.Name
                    ):
                        loops.setdefault(loop.target.id, []).append(loop.iter)
                local = _assignments(child, nested=True)
                own = params - set(local)
                if child.name in WRAPPERS:  # a pass-through: its callers' SQL is checked
                    trusted = set(own)
                else:
                    trusted = {p for p in own if _safe_at_every_call(child, p)}
                inner = Scope(
                    module,
                    imported,
                    attributes=scope.attributes,
                    function=child,
                    locals={**scope.locals, **local},
                    loops={
                        **scope.loops,
                        **{k: [_element(v) for v in vs] for k, vs in loops.items()},
                    },
                    params=own | (scope.params - set(local)),
                    trusted=trusted | (scope.trusted - set(local)),
                )
                visit(child, inner)
            else:
                if (
                    isinstance(child, ast.Call)
                    and isinstance(child.func, ast.Attribute)
                    and child.func.attr in SQL_METHODS
                    and child.args
                    and not Checker(scope, functions).safe(child.args[0])
                ):
                    name = scope.function.name if scope.function else "<module>"
                    findings.append((name, child.lineno, ast.unparse(child.args[0])[:120]))
                visit(child, scope)

    visit(tree, Scope(module, imported))
    return findings


def _element(iterable: ast.expr) -> ast.expr:
    """What a ``for`` over ``iterable`` binds: judged as the iterable's own safety."""
    return iterable


def _scan_packages() -> dict[tuple[str, str], list[tuple[int, str]]]:
    found: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for function, line, text in scan_source(path.read_text(encoding="utf-8"), relative):
                found.setdefault((relative, function), []).append((line, text))
    return found


def test_sql_is_only_built_from_literals_and_our_constants() -> None:
    found = _scan_packages()
    unexpected = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not unexpected, "SQL built from something other than constants:\n" + "\n".join(
        f"  {path}:{line} in {function}(): {text}"
        for (path, function), hits in sorted(unexpected.items())
        for line, text in hits
    )
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"ALLOWED entries that no longer match anything: {stale}"


_BAD = {
    "f-string with a value": (
        'def f(tx, run_id):\n    tx.execute(f"DELETE FROM t WHERE r = {run_id}")'
    ),
    "% formatting": 'def f(tx, run_id):\n    tx.query("SELECT %s FROM t" % run_id)',
    "str.format": 'def f(conn, v):\n    conn.execute("SELECT {}".format(v))',
    "concatenated parameter": 'def f(conn, v):\n    conn.execute("SELECT * FROM t WHERE a = " + v)',
    "local from a parameter": (
        'def f(conn, v):\n    sql = "SELECT " + str(v)\n    conn.execute(sql)'
    ),
    "attribute from outside": 'def f(conn, obj):\n    conn.execute(f"SELECT {obj.name}")',
    "unknown call": "def f(conn, v):\n    conn.execute(build(v))",
    "helper called with a value": (
        "class R:\n    def _select(self, table):\n"
        '        self.conn.execute(f"SELECT * FROM {table}")\n'
        "    def f(self, name):\n        return self._select(name)"
    ),
    "nested use of a parameter": (
        'def f(conn, v):\n    def run():\n        conn.execute(f"SELECT {v}")\n    run()'
    ),
}
_GOOD = {
    "literal": 'def f(conn, v):\n    conn.execute("SELECT * FROM t WHERE a = %s", (v,))',
    "module constant": (
        'TABLE = "t"\nQ = f"SELECT * FROM {TABLE} WHERE a = %s"\n'
        "def f(conn, v):\n    conn.execute(Q, (v,))"
    ),
    "placeholders by count": (
        "def f(conn, vs):\n"
        "    conn.execute(f\"SELECT 1 WHERE a IN ({','.join('?' * len(vs))})\", vs)"
    ),
    "clauses appended": (
        "def f(conn, a):\n    where = []\n    if a:\n        where.append('a = %s')\n"
        "    conn.execute(f\"SELECT 1 WHERE {' AND '.join(where)}\", (a,))"
    ),
    "psycopg composition": (
        'def f(conn, name):\n    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))'
    ),
    "quoted identifier": (
        "def f(tx, name, v):\n    t = quote_identifier(name)\n"
        '    tx.execute(f"DELETE FROM {t} WHERE a = %s", (v,))'
    ),
    "pass-through wrapper": (
        "def execute(self, query, params):\n    self.conn.execute(query, params)"
    ),
    "helper called with constants": (
        'EVENTS = "e"\nclass R:\n    def _select(self, table):\n'
        '        self.conn.execute(f"SELECT * FROM {table}")\n'
        "    def f(self):\n        return self._select(EVENTS)"
    ),
}


@pytest.mark.parametrize("name", sorted(_BAD))
def test_the_scanner_flags_sql_built_from_values(name: str) -> None:
    assert scan_source(_BAD[name], "bad.py"), name


@pytest.mark.parametrize("name", sorted(_GOOD))
def test_the_scanner_accepts_parametrised_sql(name: str) -> None:
    assert scan_source(_GOOD[name], "good.py") == [], name
