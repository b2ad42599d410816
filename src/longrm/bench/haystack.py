"""Haystack sources: filler paragraphs for by-construction benchmarks.

Filler must be available offline on any machine and must never be text copied into this
repository, so there are three sources: documentation that ships with Python itself (the
default), the user's own `.txt`/`.md` files, and a Hugging Face dataset the user names.
Every source yields paragraphs in a fixed order, so a seeded build is reproducible.
"""

from __future__ import annotations

import importlib
import inspect
import platform
import random
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PYTHON_DOCS = "python-docs"
HF_PREFIX = "hf:"
TEXT_SUFFIXES = (".txt", ".md")
# Long paragraphs are cut into pieces of about this size so that a prompt can be fitted to a
# token budget with whole paragraphs (a 512-token bucket leaves a window of ~75 tokens).
MAX_PARAGRAPH_CHARS = 600
MIN_PARAGRAPH_CHARS = 40
MIN_PARAGRAPH_WORDS = 6
# Share of letters and spaces below which a paragraph counts as code or a table, not prose.
MIN_LETTER_SHARE = 0.8
DEFAULT_MAX_CHARS = 20_000_000

# Standard-library modules whose docstrings serve as filler: pure, importable everywhere, and
# free of import-time side effects (no GUI, no easter eggs, nothing that starts threads).
_STDLIB_MODULES = (
    "abc",
    "argparse",
    "array",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "codecs",
    "collections",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email.message",
    "enum",
    "fractions",
    "ftplib",
    "functools",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html.parser",
    "http.client",
    "http.cookiejar",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "locale",
    "logging",
    "mailbox",
    "math",
    "mimetypes",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "zipfile",
)

_BLANK_LINE = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class HaystackError(ValueError):
    """A haystack source that is missing, unreadable or holds no usable text."""


@dataclass(frozen=True)
class Haystack:
    """Filler paragraphs in a fixed order, and a description of where they came from."""

    paragraphs: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if not self.paragraphs:
            raise HaystackError(f"haystack {self.description!r} holds no usable paragraphs")

    def __len__(self) -> int:
        return len(self.paragraphs)

    def stream(self, start: int) -> Iterator[int]:
        """Yield paragraph indices from `start` on, wrapping around forever.

        Wrapping lets a small source fill a long prompt (paragraphs then repeat).
        """
        n = len(self.paragraphs)
        i = start % n
        while True:
            yield i
            i = (i + 1) % n

    def sample(
        self,
        rng: random.Random,
        n_tokens: int,
        count_tokens: Callable[[Sequence[str]], list[int]],
    ) -> list[str]:
        """Return a contiguous run of paragraphs, from a random start, of about `n_tokens`.

        `count_tokens` maps texts to token counts; the run stops at the first paragraph that
        reaches the target, so the total is at least `n_tokens` (paragraph counts summed).
        """
        out: list[str] = []
        total = 0
        stream = self.stream(rng.randrange(len(self.paragraphs)))
        while total < n_tokens:
            batch = [self.paragraphs[next(stream)] for _ in range(32)]
            for text, count in zip(batch, count_tokens(batch), strict=True):
                if total >= n_tokens:
                    break
                out.append(text)
                total += count
        return out


def split_paragraphs(text: str, max_chars: int = MAX_PARAGRAPH_CHARS) -> list[str]:
    """Split text on blank lines into whitespace-normalised paragraphs of prose.

    Short pieces and mostly non-letter pieces (tables, code) are dropped; long ones are cut
    at sentence ends into pieces of at most about `max_chars`.
    """
    out: list[str] = []
    for block in _BLANK_LINE.split(text):
        para = " ".join(block.split())
        if len(para) < MIN_PARAGRAPH_CHARS:
            continue
        letters = sum(c.isalpha() or c.isspace() for c in para)
        if letters < MIN_LETTER_SHARE * len(para) or len(para.split()) < MIN_PARAGRAPH_WORDS:
            continue
        out.extend(_cut(para, max_chars))
    return out


def _cut(para: str, max_chars: int) -> list[str]:
    """Return `para` cut at sentence (else word) boundaries into pieces of <= ~max_chars."""
    if len(para) <= max_chars:
        return [para]
    runs = [run for s in _SENTENCE_END.split(para) for run in _wrap_words(s, max_chars)]
    pieces = _pack(runs, max_chars)
    return [p for p in pieces if len(p) >= MIN_PARAGRAPH_CHARS] or [para[:max_chars]]


def _wrap_words(sentence: str, max_chars: int) -> list[str]:
    """Return a sentence as runs of whole words of <= max_chars (one run if it already fits)."""
    if len(sentence) <= max_chars:
        return [sentence]
    return _pack(sentence.split(), max_chars)


def _pack(parts: Iterable[str], max_chars: int) -> list[str]:
    """Return `parts` joined by spaces, greedily, into runs of <= max_chars (a longer part
    stands alone)."""
    runs: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + 1 + len(part) > max_chars:
            runs.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    if current:
        runs.append(current)
    return runs


def _dedup(paragraphs: Iterable[str], max_chars: int) -> tuple[str, ...]:
    """Return paragraphs without repeats, in first-seen order, up to about max_chars in all."""
    seen: set[str] = set()
    out: list[str] = []
    total = 0
    for p in paragraphs:
        if p in seen:
            continue
        seen.add(p)
        out.append(p)
        total += len(p)
        if total >= max_chars:
            break
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Python's own documentation


def _module_docs(name: str) -> Iterator[str]:
    """Yield the docstrings of a module and of the classes, functions and methods it defines."""
    try:
        module = importlib.import_module(name)
    except ImportError:  # a trimmed Python build may lack a module; the others suffice
        return
    doc = inspect.getdoc(module)
    if doc:
        yield doc
    for attr in sorted(vars(module)):
        if attr.startswith("_"):
            continue
        obj = getattr(module, attr)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        doc = inspect.getdoc(obj)
        if doc:
            yield doc
        if inspect.isclass(obj):
            for meth_name in sorted(vars(obj)):
                meth = vars(obj)[meth_name]
                if meth_name.startswith("_") or not inspect.isfunction(meth):
                    continue
                meth_doc = inspect.getdoc(meth)
                if meth_doc:
                    yield meth_doc


def _topics_texts() -> list[str]:
    """Return the texts of pydoc's documentation topics (empty where pydoc_data is missing)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions package pydoc_data separately
        return []
    return [topics[key] for key in sorted(topics)]


@lru_cache(maxsize=4)
def python_docs_paragraphs(max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, ...]:
    """Return paragraphs from pydoc's topics then stdlib docstrings, in a fixed order.

    Cached: building it imports ~80 modules and takes a fraction of a second.
    """
    texts: list[str] = _topics_texts()
    with warnings.catch_warnings():  # deprecated names (typing.io, ...) warn when touched
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in _STDLIB_MODULES:
            texts.extend(_module_docs(name))
    return _dedup((p for t in texts for p in split_paragraphs(t)), max_chars)


def python_docs_haystack(max_chars: int = DEFAULT_MAX_CHARS) -> Haystack:
    """Return the default haystack: documentation that ships with this Python."""
    paragraphs = python_docs_paragraphs(max_chars)
    if not paragraphs:
        raise HaystackError(
            "this Python ships no documentation text (pydoc_data missing and docstrings "
            "stripped, e.g. python -OO): pass a folder of .txt/.md files or hf:NAME instead"
        )
    return Haystack(paragraphs, f"{PYTHON_DOCS} (Python {platform.python_version()})")


# ---------------------------------------------------------------------------------------------
# The user's files


def text_files(path: Path) -> list[Path]:
    """Return the .txt/.md files at `path` (the file itself, or a folder searched recursively)."""
    if not path.exists():
        raise HaystackError(f"{path}: no such file or folder (give a .txt/.md file or a folder)")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise HaystackError(f"{path}: no .txt or .md files in this folder")
    return files


def files_haystack(path: str | Path, max_chars: int = DEFAULT_MAX_CHARS) -> Haystack:
    """Return a haystack of the paragraphs of the user's text files, files in sorted order."""
    root = Path(path)
    files = text_files(root)

    def paragraphs() -> Iterator[str]:
        for f in files:
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError as err:
                raise HaystackError(f"{f}: cannot read ({err.strerror})") from None
            yield from split_paragraphs(text)

    found = _dedup(paragraphs(), max_chars)
    if not found:
        raise HaystackError(
            f"{root}: no usable paragraphs (need prose paragraphs of at least "
            f"{MIN_PARAGRAPH_CHARS} characters, separated by blank lines)"
        )
    return Haystack(found, f"files:{root}")


# ---------------------------------------------------------------------------------------------
# A Hugging Face dataset


def parse_hf_spec(spec: str) -> tuple[str, str, str]:
    """Return (name, split, column) of `hf:NAME[:SPLIT[:COLUMN]]` (defaults train, text)."""
    body = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else spec
    parts = body.split(":")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise HaystackError(f"bad dataset spec {spec!r}: expected hf:NAME[:SPLIT[:COLUMN]]")
    name = parts[0]
    split = parts[1] if len(parts) > 1 else "train"
    column = parts[2] if len(parts) > 2 else "text"
    return name, split, column


def hf_haystack(spec: str, max_chars: int = DEFAULT_MAX_CHARS) -> Haystack:
    """Return a haystack of one text column of a Hugging Face dataset (local or cached)."""
    name, split, column = parse_hf_spec(spec)
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # datasets raises many types; all mean "cannot use this source"
        raise HaystackError(
            f"cannot load dataset {name!r} split {split!r} for the haystack: {err}"
        ) from err
    if not isinstance(ds, datasets.Dataset):
        raise HaystackError(f"dataset {name!r} split {split!r} is not a plain dataset")
    if column not in ds.column_names:
        raise HaystackError(
            f"dataset {name!r} has no column {column!r}; columns: {', '.join(ds.column_names)} "
            f"(name one as hf:{name}:{split}:COLUMN)"
        )

    def paragraphs() -> Iterator[str]:
        for row in ds.select_columns([column]):
            value = row[column]
            if isinstance(value, str):
                yield from split_paragraphs(value)

    found = _dedup(paragraphs(), max_chars)
    if not found:
        raise HaystackError(f"dataset {name!r} column {column!r} holds no usable paragraphs")
    return Haystack(found, f"hf:{name}:{split}:{column}")


def load_haystack(spec: str | None, max_chars: int = DEFAULT_MAX_CHARS) -> Haystack:
    """Return the haystack a user names: None = Python docs, `hf:...` = dataset, else a path.

    `max_chars` caps how much text is read (about 4 characters per token).
    """
    if spec is None or spec == PYTHON_DOCS:
        return python_docs_haystack(max_chars)
    if spec.startswith(HF_PREFIX):
        return hf_haystack(spec, max_chars)
    return files_haystack(spec, max_chars)
