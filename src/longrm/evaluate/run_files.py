"""A run folder's files as typed records: run.json (`EvalSettings`) and results.json
(`RunResults`), read back whole by `read_run`.

Both files carry a schema version: a reader refuses a file from a newer schema rather than
misreading it, and reads older ones (version 0: written before files were versioned).

run.json is the run's identity: a rerun with equal settings resumes, a different one is
refused. It records the longrm version that wrote it (for the reader; not compared) and the
scoring version, which is compared: it changes when a release changes the scores a backend
gives to the same input, so records from before and after such a change never mix in one
folder. A folder without one predates the versioning and is refused as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from longrm import __version__
from longrm.evaluate.errors import RunFileError, RunFileMissingError
from longrm.evaluate.predictions import Prediction, read_predictions

RUN = "run.json"
RESULTS = "results.json"
PREDICTIONS = "predictions.jsonl"
PREDICTIONS_ABLATED = "predictions_ablated.jsonl"

RUN_SCHEMA = 1
RESULTS_SCHEMA = 1
#: bumped whenever a release changes the score a backend gives to the same input:
#: 1: scalar and likelihood inputs ended before the chat template's trailing tokens;
#: 2: they end exactly as the template renders them (commit 95828cc).
SCORING_VERSION = 2
#: run.json fields that describe a run without defining it (a rerun may change them)
NOT_IDENTITY = ("name", "longrm_version", "schema_version")


class EvalSettings(BaseModel):
    """run.json: what defines a run; every field but NOT_IDENTITY is its identity.

    The reward-model fields (kind to openai_params) are `longrm.options.run_identity` of the
    options the run used; a test checks that the two name the same fields.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = ""
    kind: str = ""
    name: str = ""  # display name in reports
    verdict: str = ""
    orders: int = 2
    seed: int = 42
    prompts: str = ""  # hash of the prompt templates (judge kinds)
    max_new_tokens: int = 0
    max_length: int | None = None
    bench_hash: str = ""  # content hash of the whole benchmark as loaded
    dtype: str = "auto"
    attn: str | None = None
    prefix_cache: bool = True
    protocol: str = "longrm"
    thinking: bool = False
    rope_scaling: str | None = None
    prefill: bool = False
    openai_params: str | None = None
    ablate_context: str | None = None  # None, "swap", "empty" or both: "swap,empty"
    extra: dict[str, Any] = {}
    scoring_version: int | None = SCORING_VERSION
    longrm_version: str = __version__
    schema_version: int = RUN_SCHEMA

    def identity(self) -> dict[str, Any]:
        """Return the fields that must be equal for a rerun to resume this run."""
        return self.model_dump(exclude=set(NOT_IDENTITY))


class RunResults(BaseModel):
    """results.json: a run's metrics (see `longrm.evaluate.metrics.compute_results`).

    The fields every reader relies on are typed; the breakdowns (by task, length, N, the
    robustness and ablation blocks) stay JSON objects, kept as written.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: int = 0
    n_items: int
    n_records: int
    overall: float | None = None
    overall_ci: list[float] | None = None
    errors: int = 0
    error_rate: float | None = None
    truncated_items: int = 0
    parse_failure_rate: float | None = None
    position_consistency: float | None = None
    pairwise: dict[str, Any] = {}
    bon: dict[str, Any] = {}
    context_ablation: dict[str, Any] | None = None
    ci: dict[str, Any] | None = None
    settings: EvalSettings | None = None
    model: dict[str, Any] = {}
    throughput: dict[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        """Return the results as results.json holds them (what reports and tables read)."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass
class Run:
    """A run folder read back: its settings, results, and records (ablated ones by method)."""

    folder: Path
    settings: EvalSettings
    results: RunResults
    predictions: list[Prediction] = field(default_factory=list)
    ablated: dict[str, list[Prediction]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Return the run's display name: its name, else its model, else the folder's name."""
        return self.settings.name or self.settings.model or self.folder.resolve().name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileMissingError(
            f"no {path.name} in {path.parent}: evaluate the run first"
        ) from None
    except json.JSONDecodeError as err:
        raise RunFileError(f"{path}:{err.lineno}: not JSON ({err.msg})") from None


def _validated(model: type[BaseModel], data: Any, path: Path, newest: int) -> Any:
    version = data.get("schema_version", 0) if isinstance(data, dict) else 0
    if isinstance(version, int) and version > newest:
        raise RunFileError(
            f"{path}: schema version {version}, newer than this longrm reads ({newest}); "
            "upgrade longrm to read it"
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<file>"
        raise RunFileError(f"{path}: field '{where}': {first['msg']}") from None


def read_settings(folder: str | Path) -> EvalSettings | None:
    """Return a folder's run.json as EvalSettings, or None when it has none."""
    path = Path(folder) / RUN
    if not path.exists():
        return None
    data = _read_json(path)
    if isinstance(data, dict):  # a file without them predates the versions: unknown, not ours
        data = {"scoring_version": None, "longrm_version": "", **data}
    return _validated(EvalSettings, data, path, RUN_SCHEMA)


def read_results(folder: str | Path) -> RunResults:
    """Return a folder's results.json, typed; RunFileError when missing or malformed."""
    path = Path(folder) / RESULTS
    return _validated(RunResults, _read_json(path), path, RESULTS_SCHEMA)


def ablated_path(folder: Path, index: int, method: str) -> Path:
    """Return where the records of the index-th ablation method go.

    The first method keeps predictions_ablated.jsonl (what single-method runs always wrote, so
    they resume); each further one gets predictions_ablated_<method>.jsonl.
    """
    return folder / (PREDICTIONS_ABLATED if index == 0 else f"predictions_ablated_{method}.jsonl")


def ablation_methods(ablate_context: str | None) -> list[str]:
    """Return the methods of an `ablate_context` setting ("swap,empty" -> ["swap", "empty"])."""
    if not ablate_context:
        return []
    return list(dict.fromkeys(m.strip() for m in ablate_context.split(",") if m.strip()))


def read_records(folder: str | Path) -> tuple[list[Prediction], dict[str, list[Prediction]]]:
    """Return a run folder's records and its ablated records by method (from run.json's
    `ablate_context`), for recomputing its results without the model.
    """
    folder = Path(folder)
    settings = read_settings(folder)
    methods = ablation_methods(settings.ablate_context if settings else None)
    ablated = {m: read_predictions(ablated_path(folder, i, m)) for i, m in enumerate(methods)}
    return read_predictions(folder / PREDICTIONS), {m: r for m, r in ablated.items() if r}


def read_run(folder: str | Path, records: bool = True) -> Run:
    """Return the run in `folder` (what `longrm eval` or `longrm.evaluate` wrote), typed.

    `records=False` reads only run.json and results.json (the header), not the predictions.
    A folder without run.json takes its settings from results.json's `settings` block.
    """
    folder = Path(folder)
    results = read_results(folder)
    settings = read_settings(folder) or results.settings
    if settings is None:
        raise RunFileError(f"no {RUN} in {folder} and no settings in its {RESULTS}")
    run = Run(folder, settings, results)
    if records:
        run.predictions, run.ablated = read_records(folder)
    return run
