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
        owner = {}  # node -> the function it sits in (imports under if/try at module level count as module's)
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    owner.setdefault(node, fn.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n.startswith("repfit.synth") for n in names):
                users.append(f"{path.relative_to(SRC)}:{owner.get(node, '<module>')}")
    assert sorted(set(users)) == ["cli.py:synth"], users
