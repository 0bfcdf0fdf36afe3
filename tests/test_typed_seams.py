"""The typed seams stay true to what they describe."""

from __future__ import annotations

from pathlib import Path

from wsd import querystub

ROOT = Path(__file__).resolve().parent.parent


def test_the_query_protocols_match_the_sql_files() -> None:
    """`python -m wsd.querystub > wsd/queries.py` after adding or changing a `-- name:` header."""
    assert (ROOT / "wsd" / "queries.py").read_text() == querystub.render()
