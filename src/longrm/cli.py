"""The `longrm` command: thin wrappers that parse flags, call the library and print."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from longrm.cli_audit import bench_audit_command
from longrm.cli_common import (
    AttnOpt,
    BootstrapOpt,
    CiLevelOpt,
    CiSeedOpt,
    ConcurrencyOpt,
    DtypeOpt,
    KindOpt,
    MaxLengthOpt,
    ModelOpt,
    OpenAIParamsOpt,
    PrefillOpt,
    PrefixCacheOpt,
    PromptsOpt,
    RetriesOpt,
    RopeScalingOpt,
    RunProgress,
    ThinkingOpt,
    TimeoutOpt,
    VerdictOpt,
    console,
    err_console,
    reward_model_options,
)
from longrm.cli_common import fail as _fail
from longrm.cli_serve import bon_command, serve_command
from longrm.cli_synth import synth_app
from longrm.items import Item, ItemError, LoadResult, load_items

if TYPE_CHECKING:
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


def _load(bench: Path, skip_invalid: bool) -> LoadResult:
    try:
        loaded = load_items(bench, skip_invalid=skip_invalid)
    except (ItemError, FileNotFoundError) as err:
        hint = "" if isinstance(err, FileNotFoundError) else " (--skip-invalid skips such rows)"
        raise _fail(f"{err}{hint}") from None
    if loaded.skipped:
        err_console.print(f"[yellow]skipped {len(loaded.skipped)} invalid rows[/]; first:")
        err_console.print(f"  {loaded.skipped[0]}")
    return loaded


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
    loaded = _load(path, skip_invalid)
    console.print(f"{path}: {len(loaded.items)} valid items, {len(loaded.skipped)} skipped")
    _print_summary(loaded)
    console.print(
        "manifest: ok" if manifest else "manifest: none (not built by longrm bench build)"
    )


bench_app.command("audit")(bench_audit_command)


def _prompts_hash(path: Path | None) -> str:
    from importlib import resources

    text = resources.files("longrm.rm").joinpath("prompts.toml").read_text(encoding="utf-8")
    if path is not None:
        text += path.read_text(encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _bench_hash(items: list[Item]) -> str:
    """Return a hash of the benchmark's content (every row as loaded), whatever its format."""
    from longrm.items import item_to_row

    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item_to_row(item), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _intervals(level: float, n_resamples: int, seed: int) -> IntervalSettings:
    """Return the IntervalSettings the interval flags ask for, or exit with the reason."""
    from longrm.evaluate.intervals import IntervalSettings

    try:
        return IntervalSettings(level=level, n_resamples=n_resamples, seed=seed)
    except ValueError as err:
        raise _fail(f"--ci-level/--bootstrap: {err}") from None


@app.command("eval")
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
    kind: KindOpt = None,
    verdict: VerdictOpt = "generate",
    protocol: Annotated[
        str,
        typer.Option(
            help="longrm (every display order, our parsing) | paper (the authors' rules: one "
            "seeded order per item, their verdict parsing and cut, task from the file name)."
        ),
    ] = "longrm",
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
    prefix_cache: PrefixCacheOpt = True,
    prompts: PromptsOpt = None,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            help="Tokens a generating judge may write (the authors allow 2,048). Each costs one "
            "decoding step: at ~55 tokens/s for the default model on a CPU, 2,048 tokens are "
            "~40 s per record when a judge never stops; lower it for quick looks."
        ),
    ] = 2048,
    thinking: ThinkingOpt = False,
    max_length: MaxLengthOpt = None,
    rope_scaling: RopeScalingOpt = None,
    dtype: DtypeOpt = "auto",
    attn: AttnOpt = None,
    concurrency: ConcurrencyOpt = 8,
    timeout: TimeoutOpt = 600.0,
    retries: RetriesOpt = 3,
    prefill: PrefillOpt = False,
    openai_params: OpenAIParamsOpt = None,
    retry_errors: Annotated[
        bool, typer.Option(help="Judge records that ended in an error again on resume.")
    ] = True,
    allow_errors: Annotated[
        bool, typer.Option(help="Exit 0 even when some records ended in an error.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Run name in reports.")] = None,
) -> None:
    """Judge a benchmark with any reward model; resumable; writes results and a report."""
    from longrm.evaluate import ablation
    from longrm.evaluate.protocol import check_protocol, paper_display_orders, paper_items
    from longrm.evaluate.report import results_table_markdown, write_report
    from longrm.evaluate.runner import EvalSettings, RunMismatchError, ablation_methods, evaluate
    from longrm.rm.load import load_reward_model, resolve_kind

    try:
        check_protocol(protocol)
    except ValueError as err:
        raise _fail(f"--protocol: {err}") from None
    loaded = _load(bench, skip_invalid)
    all_items = paper_items(loaded.items) if protocol == "paper" else loaded.items
    wanted_tasks, wanted_lengths = _split_csv(tasks), _split_csv(lengths)
    items = [
        i
        for i in all_items
        if (wanted_tasks is None or i.task in wanted_tasks)
        and (wanted_lengths is None or i.length_bucket in wanted_lengths)
    ][:limit]
    if not items:
        raise _fail(f"no items left in {bench} after the --tasks/--lengths/--limit filters")
    order_plan = None
    if protocol == "paper":
        paper_orders = paper_display_orders(all_items)  # drawn over whole files, as theirs are
        order_plan = lambda item: [paper_orders[item.key]]  # noqa: E731
        orders = 1
    ci = _intervals(ci_level, bootstrap, ci_seed)
    ablated = None
    if ablate_context is not None:
        try:
            methods = ablation_methods(ablate_context)
            if not methods:
                raise ablation.AblationError("name at least one method: swap, empty")
            ablated = {m: ablation.ablate_context(items, m) for m in methods}
        except ablation.AblationError as err:
            raise _fail(f"--ablate-context: {err}") from None
        ablate_context = ",".join(methods)
    try:
        resolved_kind = resolve_kind(model, kind)
    except Exception as err:
        raise _fail(str(err)) from None
    judge_like = resolved_kind in ("judge", "openai")
    settings = EvalSettings(
        model=model,
        kind=resolved_kind,
        verdict=verdict if judge_like else "",
        orders=orders,
        seed=seed,
        prompts=_prompts_hash(prompts) if judge_like else "",
        max_new_tokens=max_new_tokens if judge_like else 0,
        max_length=max_length,
        bench_hash=_bench_hash(loaded.items),
        dtype=dtype,
        attn=attn,
        prefix_cache=prefix_cache,
        protocol=protocol,
        thinking=thinking,
        rope_scaling=rope_scaling,
        ablate_context=ablate_context,
        name=name or "",
    )
    options = reward_model_options(
        kind=resolved_kind,
        verdict=verdict,
        prompts=prompts,
        prefix_cache=prefix_cache,
        max_new_tokens=max_new_tokens,
        max_length=max_length,
        rope_scaling=rope_scaling,
        dtype=dtype,
        attn=attn,
        concurrency=concurrency,
        timeout=timeout,
        retries=retries,
        protocol=protocol,
        thinking=thinking,
        prefill=prefill,
        openai_params=openai_params,
    )
    try:
        rm = load_reward_model(model, options)
    except (ValueError, OSError) as err:
        raise _fail(str(err)) from None
    progress = RunProgress("judging", "rec/s", f"records already in {out}")

    try:
        with progress:
            outcome = evaluate(
                rm,
                items,
                out,
                settings,
                on_start=progress.start,
                on_record=progress.advance,
                ablated_items=ablated,
                order_plan=order_plan,
                retry_errors=retry_errors,
                ci=ci,
            )
    except RunMismatchError as err:
        raise _fail(str(err)) from None
    finally:
        rm.close()
    md, png = write_report([out], out, names=[name] if name else None, ci=ci)
    results = outcome.results
    typer.echo(results_table_markdown({name or model: results}))
    console.print(
        f"records: {outcome.judged} judged now, {outcome.resumed} resumed; "
        f"truncated items: {results['truncated_items']}; errors: {results['errors']}"
    )
    if "context_ablation" in results:
        console.print(_ablation_line(name or model, results["context_ablation"]))
    console.print(f"predictions: {out / 'predictions.jsonl'}\nresults: {out / 'results.json'}")
    console.print(f"report: {md}\nplot: {png}")
    flags = {
        "--model": model,
        "--bench": str(bench),
        "--out": str(out),
        "--kind": resolved_kind,
        "--verdict": verdict if judge_like else None,
        "--protocol": protocol if protocol != "longrm" else None,
        "--orders": str(orders) if protocol == "longrm" else None,
        "--seed": str(seed) if protocol == "longrm" else None,
        "--max-new-tokens": str(max_new_tokens) if judge_like else None,
        "--limit": str(limit) if limit is not None else None,
        "--tasks": tasks,
        "--lengths": lengths,
        "--max-length": str(max_length) if max_length else None,
        "--rope-scaling": rope_scaling,
        "--prompts": str(prompts) if prompts else None,
        "--ablate-context": ablate_context,
        "--ci-level": str(ci_level) if ci_level != 0.95 else None,
        "--bootstrap": str(bootstrap) if bootstrap != 1000 else None,
        "--ci-seed": str(ci_seed) if ci_seed else None,
        "--dtype": dtype if dtype != "auto" else None,
        "--attn": attn,
        "--openai-params": openai_params,
    }
    argv = [part for k, v in flags.items() if v is not None for part in (k, v)]
    argv += ["--thinking"] * thinking + ["--prefill"] * prefill
    argv += ["--no-prefix-cache"] * (not prefix_cache) + ["--skip-invalid"] * skip_invalid
    typer.echo("reproduce: longrm eval " + shlex.join(argv))
    errors = results["errors"] + results.get("context_ablation", {}).get("errors", 0)
    if errors and not allow_errors:
        raise _fail(
            f"{errors} records ended in an error (see 'error' in {out / 'predictions.jsonl'}); "
            "run the same command again to retry them, or pass --allow-errors to accept them"
        )


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
    from longrm.evaluate.report import (
        comparison_markdown,
        load_results,
        results_table_markdown,
        run_names,
        write_report,
    )

    ci = _intervals(ci_level, bootstrap, ci_seed)
    wanted = _split_csv(names)
    try:
        md, png = write_report(runs, out, names=wanted, ci=ci, compare=compare)
        labels = run_names(runs, wanted)
        table = results_table_markdown(
            {n: load_results(r, ci) for n, r in zip(labels, runs, strict=True)}
        )
        paired = len(runs) >= 2 and (compare or (compare is None and len(runs) == 2))
        comparison = comparison_markdown(runs, labels, ci) if paired else ""
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(table)
    if comparison:
        typer.echo("\n" + comparison)
    console.print(f"report: {md}\nplot: {png}")


DEMO_RUNS = (  # (label, kind, verdict)
    ("likelihood", "likelihood", "generate"),
    ("judge-logprob", "judge", "logprob"),
    ("judge-generate", "judge", "generate"),
)


@app.command("demo")
def demo(
    out: Annotated[
        Path, typer.Option(help="Folder for the suite, the runs and the report.")
    ] = Path("demo-out"),
    max_new_tokens: Annotated[
        int, typer.Option(help="Tokens the generating judge may write.")
    ] = 48,
) -> None:
    """Build a small by-construction suite (512 to 4K tokens) and judge it with the default model
    as likelihood RM and as judge in both verdict modes, each also with the context ablated;
    print the tables, the context reliance of each, and the report paths.
    """
    from transformers import AutoTokenizer

    from longrm.bench.construct import FAMILIES, build_suite
    from longrm.evaluate.report import load_results, results_table_markdown, run_name, write_report
    from longrm.items import write_items
    from longrm.models import resolve_model_path

    lengths = "512,1k,2k,4k"
    console.rule("longrm demo: the default model on a length-graded, by-construction suite")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    # Every family at every length (one pair per cell, so families and lengths are not
    # confounded), and one Best-of-2/3/4 item each at 1K; sized for a few minutes on two cores.
    grid = build_suite(tokenizer, lengths=lengths, seed=0)
    items = [
        i
        for i in grid
        if i.is_pairwise or (i.length_bucket == "1k" and FAMILIES.index(i.task) == i.n - 1)
    ]
    bench = out / "bench"
    write_items(items, bench)
    console.print(f"suite: {len(items)} items in {bench}")
    run_dirs = []
    for label, kind, verdict in DEMO_RUNS:
        console.rule(f"{label}: --kind {kind} --verdict {verdict} --ablate-context swap")
        run_dir = out / label
        eval_command(
            bench=bench,
            out=run_dir,
            model="default",
            kind=kind,
            verdict=verdict,
            ablate_context="swap",
            max_new_tokens=max_new_tokens,
            concurrency=1,
            retries=0,
            name=f"SmolLM2-135M {label}",
        )
        run_dirs.append(run_dir)
    console.rule("all three runs side by side")
    md, png = write_report(run_dirs, out / "report")
    results = {run_name(d): load_results(d) for d in run_dirs}
    typer.echo(results_table_markdown(results))
    for label, r in results.items():
        console.print(_ablation_line(label, r["context_ablation"]))
    console.print(f"report: {md}\nplot: {png}")
    typer.echo(
        "full-size version (about an hour here; minutes on a GPU):\n"
        f"  longrm bench build --out {out}/bench-full --lengths 512,1k,2k,4k,8k --per-cell 3\n"
        f"  longrm eval --bench {out}/bench-full --out {out}/full-likelihood --kind likelihood "
        "--ablate-context swap\n"
        f"  longrm eval --bench {out}/bench-full --out {out}/full-judge --verdict logprob "
        "--ablate-context swap\n"
        f"  longrm report {out}/full-likelihood {out}/full-judge --out {out}/full-report"
    )


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
    --estimate prints it for other sizes): --track disrm about 96 minutes (training 23,
    evaluation 74: three models on 192 pairs, two of them also swapped and emptied), --track
    judge about 58 (training 21, evaluation 36). --eval-per-cell 6 (24 pairs a bucket, wider
    intervals) brings the disrm track to about 60.
    """
    from transformers import AutoTokenizer

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

    def run_eval(step: EvalStep, bench: Path, run_dir: Path) -> None:
        console.rule(f"eval {step.label}")
        # 2048 new tokens: `longrm eval`'s default, which the printed command leaves out
        eval_command(
            bench=bench, out=run_dir, model=step.model, kind=step.kind,
            verdict=step.verdict or "generate", ablate_context=step.ablate, concurrency=1,
            retries=0, name=step.name, allow_errors=True,
            max_new_tokens=2048 if step.max_new_tokens is None else step.max_new_tokens,
        )  # fmt: skip

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
