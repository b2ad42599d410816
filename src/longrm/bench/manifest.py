"""The manifest of a built benchmark: what made it, and hashes that show it is unchanged.

`longrm bench build` writes `manifest.json` beside the task files: the longrm and Python
versions, the build's arguments, the tokenizer, the haystack (its description and a sha256 of its
paragraphs: the default haystack is Python's own documentation, so it changes with the Python
version), and per task file its item count and sha256. `longrm bench check` verifies it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from longrm import __version__
from longrm.bench.haystack import Haystack

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """A manifest that is unreadable, or task files that no longer match it."""


def hash_files(paths: Iterable[Path]) -> tuple[str, dict[str, str]]:
    """Return the sha256 over the files' bytes (in name order) and the sha256 of each file.

    Each file enters the overall hash as its name, its byte count and its bytes, so that moving
    bytes from one file to the next changes the hash.
    """
    overall = hashlib.sha256()
    each: dict[str, str] = {}
    for path in sorted(paths, key=lambda p: p.name):
        one = hashlib.sha256()
        overall.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                one.update(chunk)
                overall.update(chunk)
        each[path.name] = one.hexdigest()
    return overall.hexdigest(), each


def haystack_sha256(haystack: Haystack) -> str:
    """Return the sha256 of the haystack's paragraphs, in order (each ends with a NUL byte)."""
    digest = hashlib.sha256()
    for paragraph in haystack.paragraphs:
        digest.update(paragraph.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _count_rows(path: Path) -> int:
    """Return the number of non-blank lines of a JSONL file."""
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def build_manifest(
    files: Sequence[Path],
    *,
    seed: int,
    lengths: Sequence[tuple[str, int]],
    families: Sequence[str],
    formats: Sequence[str],
    per_cell: int,
    model: str,
    tokenizer_name: str,
    haystack: Haystack,
) -> dict[str, Any]:
    """Return the manifest of task files just written by a build with these arguments."""
    overall, each = hash_files(files)
    entries = [
        {"name": p.name, "items": _count_rows(p), "bytes": p.stat().st_size, "sha256": each[p.name]}
        for p in sorted(files, key=lambda p: p.name)
    ]
    return {
        "manifest_version": FORMAT_VERSION,
        "longrm_version": __version__,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "seed": seed,
        "lengths": [[label, size] for label, size in lengths],
        "families": list(families),
        "formats": list(formats),
        "per_cell": per_cell,
        "tokenizer": {"model": model, "name_or_path": tokenizer_name},
        "haystack": {
            "description": haystack.description,
            "paragraphs": len(haystack),
            "sha256": haystack_sha256(haystack),
        },
        "items": sum(e["items"] for e in entries),
        "sha256": overall,
        "files": entries,
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest` as `folder/manifest.json`; return its path."""
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def stray_task_files(folder: Path, written: Sequence[Path]) -> list[Path]:
    """Return the task files in `folder` that a build did not write (left from earlier ones)."""
    names = {p.name for p in written}
    return sorted(p for p in folder.glob("*.jsonl") if p.name not in names)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """Return the manifest of a benchmark folder, or None when it has none."""
    path = folder / MANIFEST
    if not folder.is_dir() or not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: unreadable ({err})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(e, dict) and {"name", "items", "sha256"} <= set(e) for e in files
    ):
        raise ManifestError(f"{path}: no 'files' list of {{name, items, sha256}} entries")
    return manifest


def check_manifest(folder: Path) -> dict[str, Any] | None:
    """Return the folder's manifest after checking its task files against it (None: no manifest).

    Raises ManifestError naming the first file that is missing, changed (bytes or item count),
    or not listed, and when the overall hash or item count disagrees.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    entries: list[dict[str, Any]] = manifest["files"]
    for entry in entries:
        path = folder / entry["name"]
        if not path.is_file():
            raise ManifestError(f"{path}: listed in {MANIFEST} but missing")
    overall, each = hash_files(folder / e["name"] for e in entries)
    for entry in entries:
        path = folder / entry["name"]
        sha = each[entry["name"]]
        if sha != entry["sha256"]:
            raise ManifestError(
                f"{path}: changed since it was built (sha256 {sha[:12]}..., "
                f"{MANIFEST} says {entry['sha256'][:12]}...)"
            )
        rows = _count_rows(path)
        if rows != entry["items"]:
            raise ManifestError(f"{path}: {rows} items, {MANIFEST} says {entry['items']}")
    listed = {e["name"] for e in entries}
    for path in sorted(folder.glob("*.jsonl")):
        if path.name not in listed:
            raise ManifestError(f"{path}: a task file {MANIFEST} does not list")
    total = sum(int(e["items"]) for e in entries)
    if "items" in manifest and manifest["items"] != total:
        raise ManifestError(
            f"{folder / MANIFEST}: says {manifest['items']} items, its files hold {total}"
        )
    if "sha256" in manifest and manifest["sha256"] != overall:
        raise ManifestError(f"{folder / MANIFEST}: its overall sha256 does not match its files")
    return manifest
