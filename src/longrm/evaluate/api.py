"""`longrm.evaluate(...)`: the one path from a benchmark and a reward model to a run folder.

The command line (`longrm eval`), `longrm reproduce`, the demo and notebooks all call it, so a
run made from Python and one made from the shell share a run identity and resume each other.
It owns what defines a run: the item filters, the protocol's plan (the authors' items and
display orders under `paper`), the context ablation, the run identity (the benchmark's and the
prompts' hashes, the options, longrm's scoring version) and the report. Errors it raises on
purpose are `EvalError`s naming the setting at fault.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from longrm.evaluate import ablation
from longrm.evaluate.errors import EvalError, ModelLoadError, NoItemsError
from longrm.evaluate.intervals import IntervalSettings
from longrm.evaluate.predictions import Prediction
from longrm.evaluate.protocol import paper_display_orders, paper_items
from longrm.evaluate.run_files import EvalSettings, Run, RunResults, ablation_methods
from longrm.evaluate.runner import OrderPlan
from longrm.evaluate.runner import evaluate as judge_items
from longrm.items import Item, ItemError, item_to_row, load_items
from longrm.options import RewardModelOptions, run_identity
from longrm.rm.base import RewardModel


@dataclass
class EvalRun(Run):
    """What `evaluate` returns: the run as `read_run` reads it, and what this call did.

    `judged` records were judged now and `resumed` found done; `skipped` holds the rows
    `skip_invalid` passed over; `report_md` and `plot` are the run's report files.
    """

    judged: int = 0
    resumed: int = 0
    skipped: list[ItemError] = field(default_factory=list)
    report_md: Path | None = None
    plot: Path | None = None

    @property
    def errors(self) -> int:
        """Return how many records (ablated ones too) ended in an error."""
        ablation_errors = (self.results.context_ablation or {}).get("errors", 0)
        return self.results.errors + int(ablation_errors)


def bench_hash(items: Sequence[Item]) -> str:
    """Return a hash of a benchmark's content (every row as loaded), whatever its format."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item_to_row(item), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _model_kind(model: str | RewardModel, options: RewardModelOptions) -> tuple[str, str]:
    """Return (model name, kind) for the run identity."""
    if isinstance(model, RewardModel):
        if options.kind is None:
            raise EvalError(
                "a loaded reward model needs options.kind (scalar, likelihood, judge or "
                "openai): the run identity records it",
                setting="kind",
            )
        return model.name, options.kind
    from longrm.rm.load import resolve_kind

    try:
        return model, resolve_kind(model, options.kind)
    except (ValueError, OSError) as err:
        raise ModelLoadError(str(err), setting="kind" if options.kind else "model") from None


def _ablations(items: Sequence[Item], ablate_context: str | None) -> dict[str, list[Item]]:
    try:
        methods = ablation_methods(ablate_context)
        if ablate_context is not None and not methods:
            raise ablation.AblationError("name at least one method: swap, empty")
        return {m: ablation.ablate_context(items, m) for m in methods}
    except ablation.AblationError as err:
        raise EvalError(str(err), setting="ablate_context") from None


def evaluate(
    bench: str | Path | Sequence[Item],
    out: str | Path,
    model: str | RewardModel = "default",
    options: RewardModelOptions | None = None,
    *,
    tasks: Sequence[str] | None = None,
    lengths: Sequence[str] | None = None,
    limit: int | None = None,
    orders: int = 2,
    seed: int = 42,
    ablate_context: str | None = None,
    ci: IntervalSettings | None = None,
    retry_errors: bool = True,
    skip_invalid: bool = False,
    name: str | None = None,
    report: bool = True,
    on_start: Callable[[int, int], None] | None = None,
    on_record: Callable[[Prediction], None] | None = None,
) -> EvalRun:
    """Judge a benchmark with a reward model into the run folder `out`; return the run.

    Args:
        bench: a benchmark folder of `<task>.jsonl`, a JSONL file, a save_to_disk folder, or
            the items themselves (`longrm.load_items(...).items`, `build_suite(...)`).
        out: the run folder: predictions.jsonl (appended as records finish), run.json,
            results.json, results.md and the plot. A folder holding a run with the same
            identity resumes it; one with another identity is refused (RunMismatchError).
        model: a spec ('default', an HF id, a folder, openai:NAME@URL), loaded here and
            closed at the end, or a RewardModel you loaded (then pass the options it was
            loaded with, for the run identity; you close it).
        options: the reward-model options (`longrm.RewardModelOptions`), the protocol
            included: `paper` judges the authors' items in their single seeded order.
        tasks, lengths, limit: keep only these tasks, these length buckets, the first N.
        orders, seed: display orders per item and their seed (longrm protocol).
        ablate_context: "swap", "empty" or "swap,empty": also judge every item with its
            context ablated and report the context reliance against each.
        ci: how intervals are drawn (default 95%, 1000 item resamples, seed 0).
        retry_errors: judge again, on resume, records that ended in an error.
        skip_invalid: skip (and count in `.skipped`) bad benchmark rows instead of raising.
        name: the run's name in reports (not part of its identity).
        report: write results.md and the plot into `out`.
        on_start, on_record: progress callbacks, `(total, already_done)` once and
            `(prediction)` per record judged.

    Raises EvalError (its `setting` names the argument at fault; RunMismatchError,
    NoItemsError, ModelLoadError), ItemError for a bad row, FileNotFoundError for no bench.
    """
    options = options or RewardModelOptions()
    folder = Path(out)
    skipped: list[ItemError] = []
    if isinstance(bench, (str, Path)):
        loaded = load_items(bench, skip_invalid=skip_invalid)
        all_items, skipped = loaded.items, loaded.skipped
    else:
        all_items = list(bench)
    paper = options.protocol == "paper"
    planned = paper_items(all_items) if paper else all_items
    items = [
        i
        for i in planned
        if (tasks is None or i.task in tasks) and (lengths is None or i.length_bucket in lengths)
    ][:limit]
    if not items:
        where = f" in {bench}" if isinstance(bench, (str, Path)) else ""
        raise NoItemsError(f"no items left{where} after the tasks/lengths/limit filters", "tasks")
    order_plan: OrderPlan | None = None
    if paper:
        paper_orders = paper_display_orders(planned)  # drawn over whole files, as theirs are
        order_plan = lambda item: [paper_orders[item.key]]  # noqa: E731
        orders = 1
    ablated = _ablations(items, ablate_context)
    ci = ci or IntervalSettings()
    model_name, kind = _model_kind(model, options)
    settings = EvalSettings(
        model=model_name,
        orders=orders,
        seed=seed,
        bench_hash=bench_hash(all_items),
        ablate_context=",".join(ablated) or None,
        name=name or "",
        **run_identity(options, kind),
    )
    rm = model if isinstance(model, RewardModel) else _load(model, options.replace(kind=kind))
    try:
        outcome = judge_items(
            rm,
            items,
            folder,
            settings,
            on_start=on_start,
            on_record=on_record,
            ablated_items=ablated or None,
            order_plan=order_plan,
            retry_errors=retry_errors,
            ci=ci,
        )
    finally:
        if rm is not model:
            rm.close()
    run = EvalRun(
        folder,
        settings,
        RunResults.model_validate(outcome.results),
        outcome.predictions,
        outcome.ablated_by_method,
        judged=outcome.judged,
        resumed=outcome.resumed,
        skipped=skipped,
    )
    if report:
        from longrm.evaluate.report import write_report

        run.report_md, run.plot = write_report(
            [folder], folder, names=[name] if name else None, ci=ci
        )
    return run


def _load(spec: str, options: RewardModelOptions) -> RewardModel:
    from longrm.rm.load import load_reward_model

    try:
        return load_reward_model(spec, options)
    except (ValueError, OSError) as err:
        raise ModelLoadError(str(err), setting="model") from None
