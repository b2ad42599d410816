"""Distractor code for the code variant: whole top-level functions and classes from the Python
standard library's own source files, so every distractor parses and no code is copied into
this repository.
"""

from __future__ import annotations

import ast
import platform
import sysconfig
from functools import lru_cache
from pathlib import Path

from longrm.bench.haystack import Haystack, HaystackError

# Pieces of this size fit a 4K prompt next to a snippet; larger classes are left out rather than
# cut, since a cut definition would not parse.
MAX_PIECE_CHARS = 4000
MIN_PIECE_CHARS = 120
DEFAULT_MAX_CHARS = 4_000_000


def top_level_pieces(source: str, name: str) -> list[str]:
    """Return the top-level `def`/`class` blocks of a module (decorators included), each headed
    by a comment naming its file; blocks that do not parse alone are left out.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines(keepends=True)
    out = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        piece = "".join(lines[start - 1 : node.end_lineno]).rstrip()
        if not MIN_PIECE_CHARS <= len(piece) <= MAX_PIECE_CHARS:
            continue
        text = f"# from {name}\n{piece}"
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        out.append(text)
    return out


@lru_cache(maxsize=2)
def stdlib_code_haystack(max_chars: int = DEFAULT_MAX_CHARS) -> Haystack:
    """Return definitions from the running interpreter's standard-library `.py` files, files in
    sorted order (cached: parsing them takes a second or two).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))
    pieces: list[str] = []
    total = 0
    for f in files:
        try:
            source = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for piece in top_level_pieces(source, f.name):
            pieces.append(piece)
            total += len(piece)
        if total >= max_chars:
            break
    if not pieces:
        raise HaystackError(
            f"{root}: no standard-library source files to take distractor code from"
        )
    return Haystack(tuple(pieces), f"python-stdlib-code (Python {platform.python_version()})")
