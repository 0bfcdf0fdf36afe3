"""The size of the parts stays readable (issue 21: no function over ~60 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

WSD = Path(__file__).resolve().parent.parent / "wsd"
MAX_FUNCTION_LINES = 60


def test_no_function_in_wsd_is_over_60_lines() -> None:
    """A function past the limit does more than one thing: split it by what it does."""
    long = []
    for path in sorted(WSD.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(WSD.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
