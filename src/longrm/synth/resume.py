"""Resumable row outputs: rows appended as they finish, a settings sidecar that refuses to mix
runs, and a `save_to_disk` folder written from the rows at the end.

`--out x.jsonl` appends to x.jsonl and records the settings in x.settings.json. Any other path
is a folder: rows go to FOLDER/rows.jsonl, settings to FOLDER/settings.json, and `finish` writes
the dataset (`datasets.load_from_disk(FOLDER)` reads it) next to them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROWS = "rows.jsonl"
SETTINGS = "settings.json"


class OutputMismatchError(ValueError):
    """The output already holds rows written with other settings."""


def fingerprint(path: str | Path) -> str:
    """Return a content hash of an input file or of every file under an input folder."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(p) if p.is_dir() else f.name).encode("utf-8"))
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _repair_torn_tail(path: Path) -> None:
    """Cut a last line left unfinished by a crash, so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


class RowSink:
    """Where rows go: appended JSONL, keyed by each row's `id`, and the run's settings beside."""

    def __init__(self, out: str | Path, settings: dict[str, Any]) -> None:
        self.out = Path(out)
        self.as_dataset = self.out.suffix != ".jsonl"
        if self.as_dataset:
            self.rows_path = self.out / ROWS
            self.settings_path = self.out / SETTINGS
        else:
            self.rows_path = self.out
            self.settings_path = self.out.with_suffix(".settings.json")
        self.rows_path.parent.mkdir(parents=True, exist_ok=True)
        self._check(settings)
        _repair_torn_tail(self.rows_path)

    def _check(self, settings: dict[str, Any]) -> None:
        """Write the settings sidecar, or refuse when existing rows were made with others."""
        has_rows = self.rows_path.exists() and self.rows_path.stat().st_size > 0
        if has_rows and not self.settings_path.exists():
            raise OutputMismatchError(
                f"{self.rows_path} holds rows but no {self.settings_path.name}: it was not "
                "written by this command; use another --out"
            )
        if has_rows:
            found = json.loads(self.settings_path.read_text(encoding="utf-8"))
            diff = {k: (found.get(k), v) for k, v in settings.items() if found.get(k) != v}
            diff.update({k: (v, None) for k, v in found.items() if k not in settings})
            if diff:
                changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
                raise OutputMismatchError(
                    f"{self.out} holds rows made with other settings ({changes}); rerun with "
                    "the same arguments to resume, or use another --out"
                )
        self.settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    def rows(self) -> Iterator[dict[str, Any]]:
        """Yield the complete rows written so far."""
        if not self.rows_path.exists():
            return
        with open(self.rows_path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def done(self) -> set[str]:
        """Return the ids of the rows written so far."""
        return {str(row["id"]) for row in self.rows()}

    def append(self, row: dict[str, Any]) -> None:
        """Append one row and flush it, so a crash loses at most the row being written."""
        with open(self.rows_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()

    def finish(self) -> Path:
        """Return where the rows are; for a folder output, first save them as a dataset."""
        if not self.as_dataset:
            return self.rows_path
        import datasets

        rows = list(self.rows())
        try:
            ds = datasets.Dataset.from_list(rows)
        except (TypeError, ValueError) as err:  # pyarrow's errors derive from these
            raise ValueError(
                f"the rows in {self.rows_path} do not fit one Arrow schema ({err}); mixed input "
                "formats can be written with --out NAME.jsonl instead"
            ) from err
        ds.save_to_disk(str(self.out))
        return self.out
