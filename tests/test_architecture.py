"""The rooms of `synth_cli` keep their contracts (docs/architecture.md), checked on the source.

* SQL text lives only in `synth_cli/store/` (trace DBs) and `synth_cli/devserver/` (the local
  backend's own state DB, which is not a trace DB);
* `store/`, `tracing/`, `api/`, `dataset/` never print: no `print`, no rich, no direct writes to
  stdout/stderr, no typer/click echo; output goes through `synth_cli/output.py` in `commands/`;
* `commands/` build no HTTP requests (no httpx/urllib/aiohttp imports): `api/` does;
* no import cycles between modules, lazy (function-level) imports included.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "synth_cli"

SQL_RE = re.compile(
    r"^\s*(SELECT\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\S+\s+SET\s|DELETE\s+FROM\s|"
    r"CREATE\s+(TABLE|INDEX|VIEW|UNIQUE|TRIGGER|VIRTUAL)\s|DROP\s+(TABLE|INDEX|VIEW)\s|ALTER\s+TABLE\s|"
    r"PRAGMA\s|BEGIN(\s+(IMMEDIATE|EXCLUSIVE|DEFERRED))?\s*$|COMMIT\s*$|ROLLBACK\s*$|WITH\s+\w+\s+AS\s)")
SQL_HOMES = ("store", "devserver")
QUIET_ROOMS = ("store", "tracing", "api", "dataset")
HTTP_MODULES = ("httpx", "urllib.request", "aiohttp", "requests", "http.client")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _room(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else ""


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_sql_lives_only_in_the_store():
    offenders = []
    for path in _modules().values():
        if _room(path) in SQL_HOMES:
            continue
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstring_nodes(tree)
        docs |= {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                    and SQL_RE.match(node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:60]!r}")
            elif isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
                if SQL_RE.match(text):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text.strip()[:60]!r}")
    assert not offenders, "SQL outside synth_cli/store/:\n" + "\n".join(offenders)


def _imports(tree: ast.AST, module: str, is_pkg: bool) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out.extend((node.lineno, f"{target}.{a.name}") for a in node.names)
    return out


def test_core_rooms_never_print():
    offenders = []
    for name, path in _modules().items():
        if _room(path) not in QUIET_ROOMS:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for lineno, target in _imports(tree, name, path.name == "__init__.py"):
            if target.split(".")[0] in ("rich", "typer", "click"):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: imports {target}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: print()")
            if isinstance(func, ast.Attribute) and func.attr in ("write", "echo") and \
                    ast.unparse(func.value) in ("sys.stdout", "sys.stderr", "typer", "click"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(func)}()")
    assert not offenders, "output outside commands/ and output.py:\n" + "\n".join(offenders)


def test_commands_write_only_through_the_output_sink():
    """commands/ render through `Output` (get_output()), whose methods handle human, --json and
    --quiet: no print(), no writes to sys.stdout/stderr, no echo, no printing on a console directly."""
    offenders = []
    for path in _modules().values():
        if _room(path) != "commands":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: print()")
            elif isinstance(func, ast.Attribute) and (
                    (func.attr in ("write", "echo", "secho") and ast.unparse(func.value) in (
                        "sys.stdout", "sys.stderr", "typer", "click"))
                    or (func.attr in ("print", "log", "out") and ast.unparse(func.value).endswith("console"))):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(func)}()")
    assert not offenders, "output around the sink (use get_output()'s methods):\n" + "\n".join(offenders)


def test_commands_build_no_http_requests():
    offenders = []
    for name, path in _modules().items():
        if _room(path) != "commands":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for lineno, target in _imports(tree, name, path.name == "__init__.py"):
            if any(target == m or target.startswith(m + ".") for m in HTTP_MODULES):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: imports {target}")
    assert not offenders, "HTTP in commands/ (use synth_cli/api/):\n" + "\n".join(offenders)


def test_no_import_cycles():
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for _, target in _imports(tree, name, path.name == "__init__.py"):
            if target in modules and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The scanners themselves: SQL in a string, a print, an httpx import, a two-module cycle."""
    assert SQL_RE.match("SELECT 1") and SQL_RE.match("  INSERT INTO t VALUES (1)")
    assert SQL_RE.match("WITH ev AS (SELECT 1) SELECT * FROM ev")
    assert SQL_RE.match("BEGIN IMMEDIATE") and SQL_RE.match("COMMIT") and SQL_RE.match("DELETE FROM jobs")
    assert not SQL_RE.match("Select a model") and not SQL_RE.match("with care") and not SQL_RE.match("DELETE")
    tree = ast.parse("import httpx\nfrom . import b\nprint('x')\n")
    targets = [t for _, t in _imports(tree, "synth_cli.commands.a", False)]
    assert "httpx" in targets and "synth_cli.commands.b" in targets
