"""The `longrm` command: thin wrappers that parse flags, call the library and print."""

from __future__ import annotations

import hashlib
import os
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from longrm.items import ItemError, LoadResult, load_items

app = typer.Typer(
    help="longrm: long-context reward models: benchmark, evaluate, synthesize, train, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Build and check Long-RewardBench-style item sets.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
console = Console(soft_wrap=True)  # paths and commands stay copyable: never wrapped
err_console = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="'default' (SmolLM2-135M-Instruct), an HF id, a local path, or openai:NAME@URL.",
    ),
]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


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

    from longrm.bench.construct import build_suite, parse_lengths
    from longrm.bench.haystack import load_haystack
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
    items = build_suite(
        tokenizer,
        lengths=buckets,
        families=_split_csv(tasks),
        items_per_cell=per_cell,
        formats=tuple(_split_csv(formats) or ()),
        seed=seed,
        haystack=source,
    )
    files = write_items(items, out)
    console.print(
        f"wrote {len(items)} items in {time.perf_counter() - start:.1f} s to {out}: "
        + ", ".join(f.name for f in files)
    )
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
    """Validate a benchmark and print what it holds."""
    loaded = _load(path, skip_invalid)
    console.print(f"{path}: {len(loaded.items)} valid items, {len(loaded.skipped)} skipped")
    _print_summary(loaded)


def _prompts_hash(path: Path | None) -> str:
    from importlib import resources

    text = resources.files("longrm.rm").joinpath("prompts.toml").read_text(encoding="utf-8")
    if path is not None:
        text += path.read_text(encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@app.command("eval")
def eval_command(
    bench: Annotated[
        Path,
        typer.Option(
            help="Benchmark: folder of <task>.jsonl, a JSONL file, or save_to_disk folder."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Run folder: predictions.jsonl, results.json, report.")],
    model: ModelOpt = "default",
    kind: Annotated[
        str | None,
        typer.Option(help="scalar | likelihood | judge | openai (default: from the model)."),
    ] = None,
    verdict: Annotated[
        str, typer.Option(help="judge/openai verdicts: generate | logprob.")
    ] = "generate",
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
    prefix_cache: Annotated[
        bool, typer.Option(help="Encode the shared prompt once per item (off: the baseline).")
    ] = True,
    prompts: Annotated[Path | None, typer.Option(help="TOML file replacing judge prompts.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Judge tokens to generate.")] = 256,
    max_length: Annotated[
        int | None, typer.Option(help="Context window; longer prompts are cut in the middle.")
    ] = None,
    dtype: Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16.")] = "auto",
    attn: Annotated[
        str | None, typer.Option(help="Attention implementation, e.g. sdpa or flash_attention_2.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="openai: requests in flight.")] = 8,
    timeout: Annotated[float, typer.Option(help="openai: seconds per request.")] = 600.0,
    retries: Annotated[int, typer.Option(help="openai: retries with backoff.")] = 3,
    name: Annotated[str | None, typer.Option(help="Run name in reports.")] = None,
) -> None:
    """Judge a benchmark with any reward model; resumable; writes results and a report."""
    from longrm.evaluate.report import results_table_markdown, write_report
    from longrm.evaluate.runner import EvalSettings, RunMismatchError, evaluate
    from longrm.rm.load import RewardModelOptions, load_reward_model, resolve_kind

    loaded = _load(bench, skip_invalid)
    wanted_tasks, wanted_lengths = _split_csv(tasks), _split_csv(lengths)
    items = [
        i
        for i in loaded.items
        if (wanted_tasks is None or i.task in wanted_tasks)
        and (wanted_lengths is None or i.length_bucket in wanted_lengths)
    ][:limit]
    if not items:
        raise _fail(f"no items left in {bench} after the --tasks/--lengths/--limit filters")
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
        name=name or "",
    )
    options = RewardModelOptions(
        kind=resolved_kind,
        verdict=verdict,
        prompts_file=prompts,
        prefix_cache=prefix_cache,
        max_new_tokens=max_new_tokens,
        max_length=max_length,
        dtype=dtype,
        attn_implementation=attn,
        concurrency=concurrency,
        timeout=timeout,
        retries=retries,
    )
    try:
        rm = load_reward_model(model, options)
    except (ValueError, OSError) as err:
        raise _fail(str(err)) from None
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
    )
    bar: dict[str, TaskID] = {}
    started = time.perf_counter()
    new_records = [0]

    def on_start(total: int, done: int) -> None:
        bar["id"] = progress.add_task("judging", total=total, completed=done, rate="")
        if done:
            err_console.print(f"resuming: {done} of {total} records already in {out}")

    def on_record(_: object) -> None:
        new_records[0] += 1
        rate = new_records[0] / max(time.perf_counter() - started, 1e-9)
        progress.update(bar["id"], advance=1, rate=f"{rate:.2f} rec/s")

    try:
        with progress:
            outcome = evaluate(rm, items, out, settings, on_start=on_start, on_record=on_record)
    except RunMismatchError as err:
        raise _fail(str(err)) from None
    finally:
        rm.close()
    md, png = write_report([out], out, names=[name] if name else None)
    typer.echo(results_table_markdown({name or model: outcome.results}))
    console.print(
        f"records: {outcome.judged} judged now, {outcome.resumed} resumed; "
        f"truncated items: {outcome.results['truncated_items']}; "
        f"errors: {outcome.results['errors']}"
    )
    console.print(f"predictions: {out / 'predictions.jsonl'}\nresults: {out / 'results.json'}")
    console.print(f"report: {md}\nplot: {png}")
    flags = {
        "--model": model,
        "--bench": str(bench),
        "--out": str(out),
        "--kind": resolved_kind,
        "--verdict": verdict if judge_like else None,
        "--orders": str(orders),
        "--seed": str(seed),
        "--max-new-tokens": str(max_new_tokens) if resolved_kind == "judge" else None,
        "--limit": str(limit) if limit is not None else None,
        "--tasks": tasks,
        "--lengths": lengths,
        "--max-length": str(max_length) if max_length else None,
        "--prompts": str(prompts) if prompts else None,
    }
    argv = [part for k, v in flags.items() if v is not None for part in (k, v)]
    typer.echo("reproduce: longrm eval " + shlex.join(argv))


@app.command("report")
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by longrm eval.")],
    out: Annotated[Path, typer.Option(help="Folder for results.md and the plot.")] = Path("report"),
    names: Annotated[str | None, typer.Option(help="Comma-separated run names.")] = None,
) -> None:
    """Put several runs side by side: the paper's table and accuracy versus context length."""
    from longrm.evaluate.report import load_results, results_table_markdown, run_name, write_report

    try:
        md, png = write_report(runs, out, names=_split_csv(names))
        table = results_table_markdown({run_name(r): load_results(r) for r in runs})
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    typer.echo(table)
    console.print(f"report: {md}\nplot: {png}")


DEMO_RUNS = (
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
    as likelihood RM and as judge in both verdict modes; print the table and the report paths.
    """
    from transformers import AutoTokenizer

    from longrm.bench.construct import FAMILIES, build_suite
    from longrm.evaluate.report import load_results, results_table_markdown, run_name, write_report
    from longrm.items import write_items
    from longrm.models import resolve_model_path

    lengths = "512,1k,2k,4k"
    console.rule("longrm demo: the default model on a length-graded, by-construction suite")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    grid = build_suite(tokenizer, lengths=lengths, items_per_cell=1, seed=0)
    # Sized for about three minutes on two cores: every length holds pairs from two of the four
    # families (alternating), and Best-of-2/3/4 appear once each at 1K.
    buckets = lengths.split(",")
    items = [
        i
        for i in grid
        if (i.is_pairwise and (FAMILIES.index(i.task) + buckets.index(i.length_bucket)) % 2 == 0)
        or (not i.is_pairwise and i.length_bucket == "1k" and FAMILIES.index(i.task) == i.n - 1)
    ]
    bench = out / "bench"
    write_items(items, bench)
    console.print(f"suite: {len(items)} items in {bench}")
    run_dirs = []
    for label, kind, verdict in DEMO_RUNS:
        console.rule(f"{label}: --kind {kind} --verdict {verdict}")
        run_dir = out / label
        eval_command(
            bench=bench,
            out=run_dir,
            model="default",
            kind=kind,
            verdict=verdict,
            orders=2,
            seed=42,
            limit=None,
            tasks=None,
            lengths=None,
            skip_invalid=False,
            prefix_cache=True,
            prompts=None,
            max_new_tokens=max_new_tokens,
            max_length=None,
            dtype="auto",
            attn=None,
            concurrency=1,
            timeout=600.0,
            retries=0,
            name=f"SmolLM2-135M {label}",
        )
        run_dirs.append(run_dir)
    console.rule("all three runs side by side")
    md, png = write_report(run_dirs, out / "report")
    typer.echo(results_table_markdown({run_name(d): load_results(d) for d in run_dirs}))
    console.print(f"report: {md}\nplot: {png}")
    typer.echo(
        "full-size version (about an hour here; minutes on a GPU):\n"
        f"  longrm bench build --out {out}/bench-full --lengths 512,1k,2k,4k,8k --per-cell 3\n"
        f"  longrm eval --bench {out}/bench-full --out {out}/full-likelihood --kind likelihood\n"
        f"  longrm eval --bench {out}/bench-full --out {out}/full-judge --verdict logprob\n"
        f"  longrm report {out}/full-likelihood {out}/full-judge --out {out}/full-report"
    )


@app.command("model-path")
def model_path(
    gguf: Annotated[
        bool, typer.Option(help="Print the GGUF file (for llama.cpp servers).")
    ] = False,
) -> None:
    """Print where the default model lives (converted once into $LONGRM_HOME)."""
    from longrm.models import default_model_dir, default_model_gguf

    console.print(str(default_model_gguf() if gguf else default_model_dir()), soft_wrap=True)


def main() -> None:  # pragma: no cover - console-script entry for `python -m longrm`
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
