"""The shape issue 13 left the house in, kept: small modules, small classes, no cycle
workarounds.

- No module of the journal or cluster packages is over 400 lines (the pure election core
  apart: one state machine, tested as one), and no class anywhere under app/services has
  more than 25 methods.
- No import inside a function anywhere in app/ (the usual workaround for an import cycle),
  except the CLI's subcommands, which import only what the chosen command needs so that
  `verify-audit` starts without Flask.
- No bare `Any` annotation in the journal or the cluster packages (`x: Any` is what
  stands in for a type that could not be imported); `Any` inside a container
  (`dict[str, Any]`: decoded JSON) is the honest type.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
SMALL_PACKAGES = ("services/journal", "services/cluster")
MAX_LINES = 400
LONG_ALLOWED = {"services/cluster/election.py"}
MAX_METHODS = 25
LAZY_IMPORTS_ALLOWED = {"__main__.py"}
# module -> why its bare `Any` is the honest type (none today).
ANY_ALLOWED: dict[str, str] = {}


def _rel(path: Path) -> str:
    return path.relative_to(APP).as_posix()


def _python_files(under: str = "") -> list[Path]:
    return sorted((APP / under).rglob("*.py"))


def test_journal_and_cluster_modules_are_small():
    long = {_rel(p): n for pkg in SMALL_PACKAGES for p in _python_files(pkg)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
            and _rel(p) not in LONG_ALLOWED}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_service_class_has_more_than_25_methods():
    big = {}
    for path in _python_files("services"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                methods = [n for n in node.body
                           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                if len(methods) > MAX_METHODS:
                    big[f"{_rel(path)}:{node.name}"] = len(methods)
    assert not big, f"classes with more than {MAX_METHODS} methods: {big}"


def test_no_import_inside_a_function():
    lazy = []
    for path in _python_files():
        if _rel(path) in LAZY_IMPORTS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy += [f"{_rel(path)}:{sub.lineno}" for sub in ast.walk(node)
                         if isinstance(sub, (ast.Import, ast.ImportFrom))]
    assert not lazy, f"imports inside functions (import cycle workarounds?): {lazy}"


def bare_any(tree: ast.AST) -> list[int]:
    """Lines where `Any` is a whole annotation (`x: Any`, `-> Any`): what stands in for a
    type that could not be imported. `Any` inside a container (`dict[str, Any]`, decoded
    JSON) is the honest type and is not counted."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [a.annotation for a in (*args.posonlyargs, *args.args,
                                                  *args.kwonlyargs, args.vararg, args.kwarg)
                           if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        else:
            continue
        found += [a.lineno for a in annotations
                  if isinstance(a, ast.Name) and a.id == "Any"
                  or isinstance(a, ast.Constant) and a.value == "Any"]
    return found


def test_no_bare_any_in_journal_and_cluster():
    uses = {}
    for pkg in SMALL_PACKAGES:
        for path in _python_files(pkg):
            lines = bare_any(ast.parse(path.read_text(encoding="utf-8")))
            if lines and _rel(path) not in ANY_ALLOWED:
                uses[_rel(path)] = lines
    assert not uses, f"`Any` standing for a type in the journal/cluster: {uses}"


def test_the_checks_see_what_they_look_for():
    """The walkers find a lazy import and an `Any` in made-up code."""
    tree = ast.parse("from typing import Any\n"
                     "def f(x: Any, y: dict[str, Any]) -> Any:\n    import os\n    return os\n")
    funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert any(isinstance(s, ast.Import) for s in ast.walk(funcs[0]))
    assert bare_any(tree) == [2, 2]
