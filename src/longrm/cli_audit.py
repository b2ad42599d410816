"""`longrm bench audit`: context-blind controls on any benchmark, with intervals and a verdict."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from longrm.cli_common import (
    CiLevelOpt,
    MaxLengthOpt,
    RunProgress,
    console,
    err_console,
    fail,
    read_or_fail,
    reward_model_options,
)

if TYPE_CHECKING:
    from longrm.bench.audit import AuditResult
    from longrm.bench.controls import Control, ModelControl
    from longrm.bench.pairs import BestOfN
    from longrm.bench.probe import ProbeSettings

MODEL_KINDS = ("likelihood", "scalar")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def overall_table(result: AuditResult) -> Table:
    """Return one row per control: accuracy, interval, n; leaks in red."""
    level = f"{100 * result.level:g}%"
    pairs = result.pairs
    title = f"controls on {pairs.n_items} items ({len(pairs.pairs)} pairs)"
    table = Table(title=title, caption="n: items; an item scores the mean of its pairs' outcomes")
    for name, justify in (("control", "left"), ("kind", "left"), ("accuracy", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column(f"{level} interval", justify="right")
    table.add_column("n", justify="right")
    table.add_column("notes")
    for c in result.controls:
        kind = "blind" if c.blind else "reference"
        if c.unavailable is not None:
            table.add_row(c.name, kind, "-", "-", "0", c.unavailable)
            continue
        acc = result.accuracy(c.name)
        style = "bold red" if c.blind and acc.excludes_chance else None
        table.add_row(
            c.name,
            kind,
            f"{_pct(acc.value)}%",
            f"[{_pct(acc.lo)}, {_pct(acc.hi)}]",
            str(acc.n),
            "; ".join(c.notes),
            style=style,
        )
    return table


def breakdown_table(result: AuditResult, by: str) -> Table:
    """Return one row per control and one column per value of `by`: accuracy in percent, with
    a `*` where the interval excludes 50% (the intervals are in --json).
    """
    level = f"{100 * result.level:g}%"
    groups = result.groups(by)
    table = Table(title=f"by {by}", caption=f"accuracy %; * {level} interval excludes 50%")
    table.add_column("control", no_wrap=True)
    for value, pairs in groups.items():
        n_items = len({p.group for p in pairs})
        table.add_column(f"{value or '(none)'}\nn={n_items}", justify="right")
    for c in result.controls:
        if c.unavailable is not None:
            continue
        cells = []
        for pairs in groups.values():
            acc = result.accuracy(c.name, pairs)
            mark = "*" if acc.excludes_chance else ""
            text = f"{_pct(acc.value)}{mark}" if acc.n else "-"
            cells.append(f"[bold red]{text}[/]" if mark and c.blind else text)
        table.add_row(c.name, *cells)
    return table


def _probe_control(
    train: Path | None, work: Path | None, settings: ProbeSettings, folds: int, seed: int
) -> Control:
    """Return the trained blind probe, trained on `train`'s pairs or cross-fitted."""
    import tempfile

    from longrm.bench.pairs import item_pairs
    from longrm.bench.probe import TrainedProbeControl
    from longrm.bench.release_items import load_audit_items
    from longrm.items import ItemError

    if settings.epochs <= 0:
        raise fail(f"--probe-epochs: must be positive, got {settings.epochs}")
    if folds < 2:
        raise fail(f"--probe-folds: at least 2, got {folds}")
    train_pairs = None
    if train is not None:
        try:
            train_pairs = item_pairs(load_audit_items(train, False).items).pairs
        except (ItemError, FileNotFoundError) as err:
            raise fail(f"--probe-train: {err}") from None
    folder = work if work is not None else Path(tempfile.mkdtemp(prefix="longrm-probe-"))
    return TrainedProbeControl(
        folder,
        settings,
        train_pairs=train_pairs,
        folds=folds,
        seed=seed,
        log=lambda line: err_console.print(line),
    )


def bench_audit_command(
    bench: Annotated[
        Path,
        typer.Argument(
            help="A benchmark: JSONL file, folder of them, or save_to_disk folder (built "
            "suites, official Long-RewardBench rows, RewardBench/TRL prompt/chosen/rejected "
            "rows, the authors' Stage II release rows)."
        ),
    ],
    by: Annotated[
        str | None,
        typer.Option(
            help="Breakdowns, comma-separated: task, subtask, subtype, length_bucket, format, "
            "ranks."
        ),
    ] = None,
    folds: Annotated[int, typer.Option(help="Cross-fitting folds of the learned controls.")] = 5,
    seed: Annotated[int, typer.Option(help="Seeds the folds and the bootstrap.")] = 0,
    best_of_n: Annotated[
        str,
        typer.Option(
            help="Best-of-N items: 'pairs' (every pair of candidates whose gold order is "
            "known; an item's pairs share a fold) or 'skip' (counted)."
        ),
    ] = "pairs",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Also score with this model ('default', HF id or path) with the context "
            "(the reference), emptied and swapped.",
        ),
    ] = None,
    kind: Annotated[
        str, typer.Option(help="--model's kind: likelihood | scalar (models that score).")
    ] = "likelihood",
    max_length: MaxLengthOpt = None,
    trained_probe: Annotated[
        bool,
        typer.Option(
            help="Also fine-tune the default model (LoRA scalar head) on pairs with the context "
            "emptied and judge held-out pairs the same way: a blind scorer that finds cues no "
            "heuristic names. Cross-fitted over BENCH's items unless --probe-train is given. "
            "About 2.5 s per training pair and epoch on 2 CPU cores."
        ),
    ] = False,
    probe_train: Annotated[
        Path | None,
        typer.Option(
            help="Train the probe on this benchmark instead (e.g. another seed's built "
            "suite); it must share no pair with BENCH."
        ),
    ] = None,
    probe_dir: Annotated[
        Path | None,
        typer.Option(help="Where the probe's models go (reused when rerun); default: a temp dir."),
    ] = None,
    probe_model: Annotated[
        str, typer.Option(help="The model the probe fine-tunes ('default', HF id or folder).")
    ] = "default",
    probe_epochs: Annotated[float, typer.Option(help="Passes over the probe's pairs.")] = 2.0,
    probe_folds: Annotated[int, typer.Option(help="Cross-fitting folds of the probe.")] = 2,
    ci_level: CiLevelOpt = 0.95,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every number and outcome here.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Exit with status 1 when a blind control excludes chance.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option(help="Skip bad rows (counted) instead of stopping.")
    ] = False,
) -> None:
    """Run context-blind controls (length, words, numbers, question overlap, bag-of-words
    classifiers, optionally a model without the context and a trained blind probe) on a
    benchmark's pairs and say whether any beats
    chance: a benchmark whose labels need the context keeps them all at 50%.
    """
    from longrm.bench.audit import default_controls, run_audit
    from longrm.bench.pairs import GROUP_FIELDS, item_pairs
    from longrm.bench.probe import ProbeSettings
    from longrm.bench.release_items import ReleaseLoad, load_audit_items
    from longrm.evaluate.intervals import z_value

    fields = [f.strip() for f in (by or "").split(",") if f.strip()]
    bad = [f for f in fields if f not in GROUP_FIELDS]
    if bad:
        raise fail(f"--by: unknown {', '.join(bad)}; choose from {', '.join(GROUP_FIELDS)}")
    if best_of_n not in ("pairs", "skip"):
        raise fail(f"--best-of-n: {best_of_n!r}; choose pairs or skip")
    if folds < 2:
        raise fail(f"--folds: at least 2, got {folds}")
    if kind not in MODEL_KINDS:
        raise fail(f"--kind: {kind!r}; choose {' or '.join(MODEL_KINDS)} (judges: longrm eval)")
    try:
        z_value(ci_level)
    except ValueError as err:
        raise fail(f"--ci-level: {err}") from None
    loaded = read_or_fail(lambda: load_audit_items(bench, skip_invalid))
    if isinstance(loaded, ReleaseLoad) and loaded.pointwise:
        err_console.print(f"passed over {loaded.pointwise} Stage I rows (no preference in them)")
    mode = cast("BestOfN", best_of_n)
    pairs = item_pairs(loaded.items, mode)
    if not pairs.pairs:
        raise fail(f"{bench}: no item with an ordered pair of candidates to audit")
    skipped = f", {pairs.skipped_best_of_n} Best-of-N items skipped" if mode == "skip" else ""
    console.print(f"{bench}: {len(pairs.pairs)} pairs from {pairs.n_items} items{skipped}")

    controls: list[Control] = list(default_controls(folds, seed))
    if trained_probe or probe_train is not None:
        settings = ProbeSettings(model=probe_model, epochs=probe_epochs, seed=seed)
        controls.append(_probe_control(probe_train, probe_dir, settings, probe_folds, seed))
    scored: list[ModelControl] = []
    rm = None
    if model is not None:
        from longrm.bench.controls import model_controls
        from longrm.rm.load import load_reward_model

        try:
            rm = load_reward_model(model, reward_model_options(kind=kind, max_length=max_length))
        except (ValueError, OSError) as err:
            raise fail(f"--model: {err}") from None
    progress = RunProgress("scoring", "items/s", "")
    try:
        if rm is not None:
            scored = model_controls(rm, f"{kind} of {model}", progress.advance)
            controls += scored
        with progress if rm is not None else nullcontext():
            if rm is not None:
                progress.start(total=3 * pairs.n_items, done=0)
            result = run_audit(loaded.items, controls, level=ci_level, best_of_n=mode)
    finally:
        if rm is not None:
            rm.close()

    console.print(overall_table(result))
    for field in fields:
        console.print(breakdown_table(result, field))
    reliance: list[dict[str, Any]] = []
    for ablated in scored[1:]:
        if result.control(ablated.name).unavailable is None:
            diff, (lo, hi), n = result.difference(scored[0].name, ablated.name, seed=seed)
            reliance.append({"minus": ablated.name, "difference": diff, "interval": [lo, hi]})
            console.print(
                f"context bought over '{ablated.name}': {100 * diff:+.1f} points "
                f"[{100 * lo:+.1f}, {100 * hi:+.1f}] (paired bootstrap over {n} items)"
            )
    if json_path is not None:
        data: dict[str, Any] = {"bench": str(bench), "model": model}
        data["kind"] = kind if model else None
        data.update(result.to_dict(by=GROUP_FIELDS))
        data["reliance"] = reliance
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        console.print(f"wrote {json_path}")
    console.print(result.verdict())
    if strict and result.leaks():
        raise typer.Exit(code=1)
