"""The `longrm` command: thin wrappers that parse flags, call the library and print."""

from __future__ import annotations

import os
import shlex
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from longrm.cli_audit import bench_audit_command
from longrm.cli_common import (
    BootstrapOpt,
    CiLevelOpt,
    CiSeedOpt,
    ModelOpt,
    RunProgress,
    console,
    err_console,
    load_or_fail,
    reward_model_flags,
)
from longrm.cli_common import fail as _fail
from longrm.cli_demo import demo_command
from longrm.cli_serve import bon_command, serve_command
from longrm.cli_synth import synth_app
from longrm.items import Item, ItemError, LoadResult
from longrm.options import RewardModelOptions, option_argv

if TYPE_CHECKING:
    from longrm.evaluate.api import EvalRun
    from longrm.evaluate.intervals import IntervalSettings

app = typer.Typer(
    help="longrm: long-context reward models: benchmark, evaluate, synthesize, train, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Build and check Long-RewardBench-style item sets.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
train_app = typer.Typer(
    help="Train judges (Stage I SFT, Stage II alignment) and scalar reward models.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")
app.add_typer(synth_app, name="synth")


def _split_csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@bench_app.command("build")
def bench_build(
    out: Annotated[Path, typer.Option(help="Folder to write <task>.jsonl files into.")],
    model: ModelOpt = "default",
    lengths: Annotated[
        str, typer.Option(help="Context length buckets in tokens of --model's tokenizer.")
    ] = "512,1k,2k,4k",
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task families.")] = None,
    per_cell: Annotated[int, typer.Option(help="Items per (family, length, format) cell.")] = 1,
    formats: Annotated[
        str, typer.Option(help="Item formats: pairwise, bon2, bon3, bon4.")
    ] = "pairwise,bon2,bon3,bon4",
    seed: Annotated[int, typer.Option(help="Same seed, same items.")] = 0,
    haystack: Annotated[
        str | None,
        typer.Option(
            help="Filler text: a file or folder of .txt/.md files, or hf:NAME[:SPLIT[:COLUMN]]; "
            "default: documentation that ships with Python."
        ),
    ] = None,
) -> None:
    """Write a by-construction benchmark whose labels hold without any judge."""
    from transformers import AutoTokenizer

    from longrm.bench.construct import FAMILIES, FORMATS, build_suite, parse_lengths
    from longrm.bench.haystack import load_haystack
    from longrm.bench.manifest import build_manifest, stray_task_files, write_manifest
    from longrm.items import write_items
    from longrm.models import resolve_model_path

    try:
        buckets = parse_lengths(lengths)
    except ValueError as err:
        raise _fail(f"--lengths: {err}") from None
    try:
        source = load_haystack(haystack)
    except (ValueError, FileNotFoundError) as err:
        raise _fail(f"--haystack: {err}") from None
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
    start = time.perf_counter()
    families = _split_csv(tasks) or list(FAMILIES)
    format_list = _split_csv(formats) or list(FORMATS)
    items = build_suite(
        tokenizer,
        lengths=buckets,
        families=families,
        items_per_cell=per_cell,
        formats=tuple(format_list),
        seed=seed,
        haystack=source,
    )
    files = write_items(items, out)
    manifest = build_manifest(
        files,
        seed=seed,
        lengths=buckets,
        families=families,
        formats=format_list,
        per_cell=per_cell,
        model=model,
        tokenizer_name=str(getattr(tokenizer, "name_or_path", "")),
        haystack=source,
    )
    write_manifest(out, manifest)
    console.print(
        f"wrote {len(items)} items in {time.perf_counter() - start:.1f} s to {out}: "
        + ", ".join(f.name for f in files)
        + ", manifest.json"
    )
    for stray in stray_task_files(out, files):
        err_console.print(f"[yellow]warning:[/] {stray} is not from this build; remove it")
    _print_summary(LoadResult(items=items))


def _print_summary(loaded: LoadResult) -> None:
    kinds = Counter("pairwise" if i.is_pairwise else f"best-of-{i.n}" for i in loaded.items)
    console.print("formats: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    console.print(
        "tasks:   "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(i.task for i in loaded.items).items()))
    )
    console.print(
        "lengths: "
        + ", ".join(f"{k} {v}" for k, v in Counter(i.length_bucket for i in loaded.items).items())
    )


@bench_app.command("check")
def bench_check(
    path: Annotated[
        Path, typer.Argument(help="A JSONL file, a folder of them, or a save_to_disk folder.")
    ],
    skip_invalid: Annotated[
        bool, typer.Option(help="Skip bad rows (counted) instead of stopping.")
    ] = False,
) -> None:
    """Validate a benchmark (and its manifest, if it has one) and print what it holds."""
    from longrm.bench.manifest import ManifestError, check_manifest

    try:
        manifest = check_manifest(path)
    except ManifestError as err:
        raise _fail(f"manifest: {err}") from None
    loaded = load_or_fail(path, skip_invalid)
    console.print(f"{path}: {len(loaded.items)} valid items, {len(loaded.skipped)} skipped")
    _print_summary(loaded)
    console.print(
        "manifest: ok" if manifest else "manifest: none (not built by longrm bench build)"
    )


bench_app.command("audit")(bench_audit_command)


def _intervals(level: float, n_resamples: int, seed: int) -> IntervalSettings:
    """Return the IntervalSettings the interval flags ask for, or exit with the reason."""
    from longrm.evaluate.intervals import IntervalSettings

    try:
        return IntervalSettings(level=level, n_resamples=n_resamples, seed=seed)
    except ValueError as err:
        raise _fail(f"--ci-level/--bootstrap: {err}") from None


# `reward_model_flags` turns a command's `options` parameter into one flag per declared option.
_FROM_FLAGS = RewardModelOptions()


@app.command("eval")
@reward_model_flags()
def eval_command(
    bench: Annotated[
        Path,
        typer.Option(
            help="Benchmark: folder of <task>.jsonl, a JSONL file, or save_to_disk folder; "
            "official Long-RewardBench rows or short preference rows (prompt/chosen/rejected)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Run folder: predictions.jsonl, results.json, report.")],
    model: ModelOpt = "default",
    options: RewardModelOptions = _FROM_FLAGS,
    orders: Annotated[
        int, typer.Option(help="Display orders per item (2: a pair in both orders).")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the display orders.")] = 42,
    limit: Annotated[int | None, typer.Option(help="Judge only the first N items.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks to keep.")] = None,
    lengths: Annotated[
        str | None, typer.Option(help="Comma-separated length buckets to keep.")
    ] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip bad rows (counted).")] = False,
    ablate_context: Annotated[
        str | None,
        typer.Option(
            help="Also judge every item with its context ablated (swap: another item's context "
            "of the same length bucket; empty: none; swap,empty: both, each a control of the "
            "other) and report the context reliance against each."
        ),
    ] = None,
    ci_level: CiLevelOpt = 0.95,
    bootstrap: BootstrapOpt = 1000,
    ci_seed: CiSeedOpt = 0,
    retry_errors: Annotated[
        bool, typer.Option(help="Judge records that ended in an error again on resume.")
    ] = True,
    allow_errors: Annotated[
        bool, typer.Option(help="Exit 0 even when some records ended in an error.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Run name in reports.")] = None,
) -> None:
    """Judge a benchmark with any reward model; resumable; writes results and a report."""
    from longrm.evaluate.report import results_table_markdown

    loaded = load_or_fail(bench, skip_invalid)
    ci = _intervals(ci_level, bootstrap, ci_seed)
    run = _evaluate(
        loaded.items,
        out,
        model,
        options,
        tasks=_split_csv(tasks),
        lengths=_split_csv(lengths),
        limit=limit,
        orders=orders,
        seed=seed,
        ablate_context=ablate_context,
        ci=ci,
        retry_errors=retry_errors,
        name=name,
    )
    results = run.results
    typer.echo(results_table_markdown({name or model: results.as_dict()}))
    console.print(
        f"records: {run.judged} judged now, {run.resumed} resumed; "
        f"truncated items: {results.truncated_items}; errors: {results.errors}"
    )
    if results.context_ablation:
        console.print(_ablation_line(name or model, results.context_ablation))
    console.print(f"predictions: {out / 'predictions.jsonl'}\nresults: {out / 'results.json'}")
    console.print(f"report: {run.report_md}\nplot: {run.plot}")
    paper = options.protocol == "paper"
    flags = {
        "--model": model,
        "--bench": str(bench),
        "--out": str(out),
        "--orders": None if paper else str(orders),
        "--seed": None if paper else str(seed),
        "--limit": str(limit) if limit is not None else None,
        "--tasks": tasks,
        "--lengths": lengths,
        "--ablate-context": run.settings.ablate_context,
        "--ci-level": str(ci_level) if ci_level != 0.95 else None,
        "--bootstrap": str(bootstrap) if bootstrap != 1000 else None,
        "--ci-seed": str(ci_seed) if ci_seed else None,
    }
    argv = [part for k, v in flags.items() if v is not None for part in (k, v)]
    argv += option_argv(options, run.settings.kind) + ["--skip-invalid"] * skip_invalid
    typer.echo("reproduce: longrm eval " + shlex.join(argv))
    if run.errors and not allow_errors:
        raise _fail(
            f"{run.errors} records ended in an error (see 'error' in {out / 'predictions.jsonl'}); "
            "run the same command again to retry them, or pass --allow-errors to accept them"
        )


def _evaluate(
    bench: Sequence[Item], out: Path, model: str, options: RewardModelOptions, **kwargs: Any
) -> EvalRun:
    """Return `longrm.evaluate`'s run, with a progress bar; its errors end the command, each
    naming its flag.
    """
    from longrm.evaluate.api import evaluate
    from longrm.evaluate.errors import EvalError

    progress = RunProgress("judging", "rec/s", f"records already in {out}")
    try:
        with progress:
            return evaluate(
                bench, out, model, options, on_start=progress.start, on_record=progress.advance,
                **kwargs,
            )  # fmt: skip
    except EvalError as err:
        flag = _FLAGS.get(err.setting or "")
        raise _fail(f"{flag}: {err}" if flag else str(err)) from None


# The flag of each setting an EvalError can name, where the message does not name it itself.
_FLAGS = {
    "ablate_context": "--ablate-context",
    "protocol": "--protocol",
    "tasks": "--tasks/--lengths/--limit",
}


def _ablation_line(label: str, block: dict[str, Any]) -> str:
    """Return a line per ablation method on context reliance: accuracy with and without the
    context, with intervals (order-debiased too, for verdict-probability judges).
    """

    def pct(entry: dict[str, Any], key: str) -> str:
        value, ci = entry.get(key), entry.get(f"{key}_ci")
        if value is None:
            return "–"
        return f"{100 * value:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    lines = []
    for method, entry in (block.get("by_method") or {block.get("method"): block}).items():
        for prefix, kind in (("", "accuracy"), ("debiased_", "order-debiased accuracy")):
            if entry.get(f"{prefix}reliance") is None and prefix:
                continue
            lines.append(
                f"context ablation ({method}), {label}: {kind} with context "
                f"{pct(entry, prefix + 'accuracy_with_context')}, without "
                f"{pct(entry, prefix + 'accuracy_without_context')}, reliance "
                f"{pct(entry, prefix + 'reliance')} over {entry['n_items']} items"
            )
    return "\n".join(lines)


@app.command("report")
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by longrm eval.")],
    out: Annotated[Path, typer.Option(help="Folder for results.md and the plot.")] = Path("report"),
    names: Annotated[str | None, typer.Option(help="Comma-separated run names.")] = None,
    ci_level: CiLevelOpt = 0.95,
    bootstrap: BootstrapOpt = 1000,
    ci_seed: CiSeedOpt = 0,
    compare: Annotated[
        bool | None,
        typer.Option(
            "--compare/--no-compare",
            help="Compare the first run with each other one on the items both judged: "
            "difference, paired-bootstrap interval, McNemar's exact p (default: with two runs).",
        ),
    ] = None,
) -> None:
    """Put several runs side by side: the paper's table and accuracy versus context length,
    with intervals; with two runs, a paired comparison of the first against the second.
    """
    from longrm.evaluate.errors import RunFileError
    from longrm.evaluate.report import (
        comparison_markdown,
        load_results,
        results_table_markdown,
        run_names,
        write_report,
    )
    from longrm.evaluate.run_files import read_run

    ci = _intervals(ci_level, bootstrap, ci_seed)
    wanted = _split_csv(names)
    try:
        for run_dir in runs:  # every folder readable before anything is written
            read_run(run_dir, records=False)
        md, png = write_report(runs, out, names=wanted, ci=ci, compare=compare)
        labels = run_names(runs, wanted)
        table = results_table_markdown(
            {n: load_results(r, ci) for n, r in zip(labels, runs, strict=True)}
        )
        paired = len(runs) >= 2 and (compare or (compare is None and len(runs) == 2))
        comparison = comparison_markdown(runs, labels, ci) if paired else ""
    except (RunFileError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(table)
    if comparison:
        typer.echo("\n" + comparison)
    console.print(f"report: {md}\nplot: {png}")


app.command("demo")(demo_command)


@app.command("reproduce")
def reproduce(
    track: Annotated[
        str,
        typer.Option(
            help="disrm: a DisRM trained on short pairs against one trained on short and long "
            "pairs, with the untrained likelihood as baseline; judge: Stage I verdict-only SFT "
            "then Stage II, read by logprob and generating verdicts."
        ),
    ] = "disrm",
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for data, models, runs and the report (reproduce-out/TRACK)."),
    ] = None,
    model: ModelOpt = "default",
    eval_lengths: Annotated[
        str | None, typer.Option(help="Held-out buckets (512,1k,2k,4k).")
    ] = None,
    eval_per_cell: Annotated[
        int | None,
        typer.Option(help="Held-out pairs per (length, family), 4 families (12: 48 a bucket)."),
    ] = None,
    train_per_cell: Annotated[
        int | None,
        typer.Option(
            help="Training pairs per (length, family): disrm 24 (192 short pairs; the "
            "short+long DisRM takes half of them and as many long ones), judge 7 (112 pairs)."
        ),
    ] = None,
    short_lengths: Annotated[
        str | None, typer.Option(help="disrm: the short pairs' buckets (448,512).")
    ] = None,
    long_lengths: Annotated[
        str | None, typer.Option(help="disrm: the long pairs' buckets (1k,2k).")
    ] = None,
    train_lengths: Annotated[
        str | None, typer.Option(help="judge: the training pairs' buckets (448,512,1k,2k).")
    ] = None,
    controls: Annotated[
        str | None,
        typer.Option(
            help="Context controls for the trained models: swap, empty or swap,empty "
            "(disrm: swap,empty; judge: empty)."
        ),
    ] = None,
    baseline_controls: Annotated[
        bool, typer.Option(help="disrm: run the controls on the untrained likelihood too.")
    ] = False,
    judge_baseline: Annotated[
        bool, typer.Option(help="Add the untrained judge (logprob verdicts) as a baseline.")
    ] = False,
    curriculum: Annotated[
        str | None, typer.Option(help="disrm: none, or length (short pairs first).")
    ] = None,
    sft_lr: Annotated[float | None, typer.Option(help="judge: Stage I learning rate.")] = None,
    align_lr: Annotated[float | None, typer.Option(help="judge: Stage II learning rate.")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="judge: tokens the generating judge may write (16).")
    ] = None,
    estimate: Annotated[
        bool, typer.Option(help="Print the time estimate at these sizes and exit.")
    ] = False,
) -> None:
    """Measure whether training moves the long-context boundary, with intervals: build a
    held-out suite (48 pairs per bucket at 512-4K) and disjoint training pairs, train, evaluate
    by length with the context given, swapped and emptied, and print the length table (an
    interval in every cell, the command behind every row), paired comparisons and the goals,
    each PASS or MISS by its interval. Each step has its own folder; a rerun reuses finished ones.

    Time at the default sizes, estimated from figures measured on this 2-core machine (idle;
    --estimate prints it for other sizes): --track disrm about 183 minutes (training 34,
    evaluation 149: three models on 192 pairs, two of them also swapped and emptied), --track
    judge about 149 (training 78, evaluation 72). --eval-per-cell 6 (24 pairs a bucket, wider
    intervals) brings the disrm track to about 109.
    """
    from transformers import AutoTokenizer

    from longrm.evaluate.errors import EvalError
    from longrm.models import resolve_model_path
    from longrm.train.reproduce import EvalStep, ReproError, reproduce_track
    from longrm.train.reproduce_cost import Costs, estimate_line, minutes
    from longrm.train.reproduce_report import markdown
    from longrm.train.reproduce_tracks import make_track

    options = {
        "eval_lengths": eval_lengths, "eval_per_cell": eval_per_cell,
        "train_per_cell": train_per_cell, "short_lengths": short_lengths,
        "long_lengths": long_lengths, "train_lengths": train_lengths, "controls": controls,
        "baseline_controls": baseline_controls or None, "judge_baseline": judge_baseline or None,
        "curriculum": curriculum, "sft_lr": sft_lr, "align_lr": align_lr,
        "max_new_tokens": max_new_tokens,
    }  # fmt: skip
    try:
        spec = make_track(track, options)
    except ValueError as err:
        raise _fail(str(err)) from None
    if estimate:
        console.print(estimate_line(minutes(spec.estimate(Costs()))))
        return
    folder = out or Path("reproduce-out") / track
    console.rule(f"longrm reproduce --track {track}")

    def log(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    def run_eval(step: EvalStep, bench: Path, track_dir: Path) -> EvalRun:
        console.rule(f"eval {step.label}")
        progress = RunProgress("judging", "rec/s", f"records already in {step.folder(track_dir)}")
        try:
            with progress:
                run = step.run(bench, track_dir, progress.start, progress.advance)
        except EvalError as err:
            raise _fail(str(err)) from None
        console.print(
            f"records: {run.judged} judged now, {run.resumed} resumed; errors: {run.errors}; "
            f"results: {run.folder / 'results.json'}"
        )
        return run

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
    try:
        report = reproduce_track(spec, folder, model, tokenizer, run_eval, log)
    except ReproError as err:
        raise _fail(str(err)) from None
    typer.echo(markdown(report))
    log(f"report: {folder / 'reproduce.md'} (and reproduce.json; every run: {folder / 'report'})")


app.command("serve")(serve_command)
app.command("bon")(bon_command)


@app.command("model-path")
def model_path(
    gguf: Annotated[
        bool, typer.Option(help="Print the GGUF file (for llama.cpp servers).")
    ] = False,
) -> None:
    """Print where the default model lives (converted once into $LONGRM_HOME)."""
    from longrm.models import default_model_dir, default_model_gguf

    console.print(str(default_model_gguf() if gguf else default_model_dir()), soft_wrap=True)


# The trainers' flags are their config dataclasses' fields: HfArgumentParser reads them (and
# `--config FILE.yaml`) so that every field is a flag, with `--help` listing them all.
_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _train(stage: str, args: list[str]) -> None:
    from longrm.train.config import ConfigError, parse_config
    from longrm.train.stages import STAGES

    config_cls, run = STAGES[stage]
    try:
        config = parse_config(config_cls, args, prog=f"longrm train {stage}")
        record = run(config)
    except (ConfigError, ItemError, ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from None
    if int(os.environ.get("RANK", "0")) != 0:
        return
    data = record["data"]
    console.print(
        f"{stage}: {record['steps']} steps in {record['seconds']} s, loss "
        f"{record['first_loss']} -> {record['final_loss']}, {record['tokens']} tokens"
    )
    console.print(
        f"rows: {data['rows']} read, {data['truncated_rows']} cut to fit "
        f"({data['cut_tokens']} tokens of distractor text), {data['skipped']} skipped"
    )
    console.print(f"model: {config.output_dir} (longrm eval --model {config.output_dir})")


@train_app.command("sft", context_settings=_PASSTHROUGH)
def train_sft(ctx: typer.Context) -> None:
    """Stage I: SFT of a judge, loss on the judgment only (all flags: --help)."""
    _train("sft", list(ctx.args))


@train_app.command("align", context_settings=_PASSTHROUGH)
def train_align(ctx: typer.Context) -> None:
    """Stage II: LOGO (default), SimPO or DPO on judgments, --from a Stage I folder (--help)."""
    _train("align", list(ctx.args))


@train_app.command("disrm", context_settings=_PASSTHROUGH)
def train_disrm(ctx: typer.Context) -> None:
    """Discriminative RM: scalar head, Bradley-Terry on (prompt, response) pairs (--help)."""
    _train("disrm", list(ctx.args))


def main() -> None:  # pragma: no cover - console-script entry for `python -m longrm`
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
