"""The package's shape (issue 10): functions fit on a screen, and the synthetic generator stays out of production."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "repfit"
MAX_LINES = 60


def _functions():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(SRC), node


def test_every_function_in_src_fits_on_a_screen():
    long = [f"{p}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for p, n in _functions()
            if n.end_lineno - n.lineno + 1 > MAX_LINES]
    assert not long, "\n".join(long)


def test_only_the_synth_module_and_the_synth_command_import_the_generator():
    users = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "synth.py":
            continue
        tree = ast.parse(path.read_text())
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Module))]:
            for node in ast.walk(fn) if isinstance(fn, ast.FunctionDef) else ast.iter_child_nodes(fn):
                names = ([node.module] if isinstance(node, ast.ImportFrom) else
                         [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                if any(n and n.startswith("repfit.synth") for n in names):
                    where = fn.name if isinstance(fn, ast.FunctionDef) else "<module>"
                    users.append(f"{path.relative_to(SRC)}:{where}")
    assert sorted(set(users)) == ["cli.py:synth"], users
