"""`longrm synth`: make training data (Short-to-Long padding, consistency majority voting)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from longrm.cli_common import (
    ModelOpt,
    RunProgress,
    console,
    err_console,
    fail,
    read_or_fail,
    reward_model_flags,
)
from longrm.options import RewardModelOptions, option_fields
from longrm.synth.vote_job import JUDGE_OPTIONS, VOTE_MAX_NEW_TOKENS

synth_app = typer.Typer(
    help="Synthesize training data: Short-to-Long padding and consistency majority voting.",
    no_args_is_help=True,
)


@synth_app.command("vote")
@reward_model_flags(
    defaults={"max_new_tokens": VOTE_MAX_NEW_TOKENS},
    exclude=[f.name for f in option_fields() if f.name not in JUDGE_OPTIONS],
)
def vote_command(
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder: judgments.jsonl (every judgment; a rerun resumes from it), sft.jsonl "
            "(Stage I), preferences.jsonl (Stage II), pairs.jsonl (benchmark rows), agreement.json."
        ),
    ],
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--in",
            help="Rows to judge (JSONL, folder of JSONL, or save_to_disk folder): pointwise "
            "context/question/response, or pairwise context/question/chosen/rejected (split in "
            "two); short2long's rows included (their long prompt goes into the training rows).",
        ),
    ] = None,
    from_judgments: Annotated[
        Path | None,
        typer.Option(
            help="Vote on precomputed judgments instead of calling models: JSONL rows with the "
            'unit\'s fields and "judgments": [{"judge", "score" (-1 unparseable), "explanation"}] '
            "(a run's judgments.jsonl is one).",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="A judge; repeat for several: 'default', an HF id, a path, or openai:NAME@URL.",
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            help="Judges per --model: N seeded samples, named MODEL#s0..MODEL#s{N-1} "
            "(needs --temperature > 0)."
        ),
    ] = 1,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature of every judge (0: greedy).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of sample 0; sample i uses seed + i.")] = 0,
    min_agree: Annotated[
        int, typer.Option(help="Judges that must give the same score for a consensus.")
    ] = 2,
    judge_priority: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated judge names, most trusted first: whose explanation a consensus "
            "keeps (default: --model order)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Read only the first N rows.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip bad rows (counted).")] = False,
    force_score: Annotated[
        bool,
        typer.Option(
            help="Local judges: when a judgment ends without [Score: n], read the score the "
            "model finds likeliest after its text (counted as forced) instead of recording -1."
        ),
    ] = False,
    save_to_disk: Annotated[
        bool,
        typer.Option(
            help="Also write sft/, preferences/ and pairs/ as datasets save_to_disk folders."
        ),
    ] = False,
    allow_errors: Annotated[
        bool, typer.Option(help="Exit 0 even when some judge calls failed.")
    ] = False,
    *,
    options: RewardModelOptions,  # the judges' flags (JUDGE_OPTIONS), derived from the declaration
) -> None:
    """Consistency majority voting: judges score each response on its short key context; the
    plurality score's explanation becomes the training target; resumable.
    """
    from longrm.items import ItemError
    from longrm.synth import agreement
    from longrm.synth.units import ReadResult
    from longrm.synth.vote_job import VoteInputError, VoteJob, run_vote_job

    job = VoteJob(
        out=out,
        rows=input_path,
        from_judgments=from_judgments,
        models=tuple(models or ()),
        samples=samples,
        temperature=temperature,
        seed=seed,
        min_agree=min_agree,
        judge_priority=tuple(p.strip() for p in (judge_priority or "").split(",") if p.strip()),
        limit=limit,
        skip_invalid=skip_invalid,
        judge_options=options.replace(verdict="generate", force_score=force_score),
        save_to_disk=save_to_disk,
    )

    def show_skipped(read: ReadResult) -> None:
        if read.skipped:
            err_console.print(f"[yellow]skipped {len(read.skipped)} invalid rows[/]; first:")
            err_console.print(f"  {read.skipped[0]}")

    progress = RunProgress("voting", "units/min", f"units already judged in {out}")
    try:
        with progress:
            result = run_vote_job(
                job, on_read=show_skipped, on_start=progress.start, on_unit=progress.advance
            )
    except VoteInputError as err:
        hint = " (--skip-invalid skips such rows)" if err.skippable else ""
        raise fail(f"{err}{hint}") from None
    except (ItemError, ValueError, OSError) as err:
        raise fail(str(err)) from None
    outcome = result.outcome
    for line in agreement.summary_lines(outcome.stats):
        console.print(line)
    written = outcome.stats["written"]
    console.print(
        f"units: {outcome.judged} judged now, {outcome.resumed} resumed"
        + (
            f" ({outcome.calls / outcome.seconds * 60:.1f} judge calls/min)"
            if outcome.calls
            else ""
        )
        + f"; rows: {written['sft']} Stage I, {written['preferences']} Stage II, "
        f"{written['pairwise']} pairwise, {written['best_of_n']} Best-of-N"
    )
    for name, path in outcome.paths.items():
        console.print(f"{name}: {path}")
    console.print("reproduce: longrm synth vote " + shlex.join(result.argv))
    if outcome.errors and not allow_errors:
        first = outcome.errors[0]
        raise fail(
            f"{len(outcome.errors)} units were not judged (first: {first}); run the same command "
            "again to retry them, or pass --allow-errors to accept the outputs as they are"
        )


@synth_app.command("short2long")
def short2long_command(
    input_path: Annotated[
        Path,
        typer.Option(
            "--in",
            help="Short-context rows (JSONL, folder of JSONL, or save_to_disk folder): the "
            "release's chat_template rows, prompt/chosen/rejected + context, or "
            "context/question/response.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="NAME.jsonl (rows appended; settings in NAME.settings.json), or a folder "
            "written with save_to_disk (rows.jsonl and settings.json beside). A rerun resumes."
        ),
    ],
    lengths: Annotated[
        str, typer.Option(help="Target prompt lengths in tokens of --model's tokenizer (1k=1024).")
    ] = "4k,8k",
    model: ModelOpt = "default",
    seed: Annotated[int, typer.Option(help="Same seed, same rows.")] = 0,
    depth: Annotated[
        str,
        typer.Option(
            help="Where the tagged key context goes: 'uniform' (drawn per row and length) or "
            "relative depths like 0.1,0.5,0.9 (cycled over input rows)."
        ),
    ] = "uniform",
    variant: Annotated[
        str, typer.Option(help="qa | summary | safety | code (code: stdlib code distractors).")
    ] = "qa",
    haystack: Annotated[
        str | None,
        typer.Option(
            help="Distractor text: a file or folder of .txt/.md files, or "
            "hf:NAME[:SPLIT[:COLUMN]]; default: documentation that ships with Python (code "
            "variant: standard-library source)."
        ),
    ] = None,
    key_chunks: Annotated[
        str,
        typer.Option(
            help="auto: keep only the key chunks of a context over --key-share of a target (or "
            "long and untagged); always: for every row; off: never (such rows are skipped)."
        ),
    ] = "auto",
    chunk_tokens: Annotated[int, typer.Option(help="Chunk size for key-chunk scoring.")] = 512,
    key_share: Annotated[
        float, typer.Option(help="Share of a target the key context may take.")
    ] = 0.5,
    top_chunks: Annotated[int, typer.Option(help="Most key chunks kept per row.")] = 4,
    min_chunk_score: Annotated[
        float, typer.Option(help="Least normalised score (0-1) of a kept chunk after the best.")
    ] = 0.3,
    prompts: Annotated[
        Path | None,
        typer.Option(help="TOML file replacing prompt templates ({variant}_system, user, ...)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Read only the first N rows.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip bad rows (counted).")] = False,
) -> None:
    """Short-to-Long: pad short-context rows to long target lengths, labels unchanged; the key
    context is tagged and placed at a controlled depth among whole distractor documents.
    """
    from transformers import AutoTokenizer

    from longrm.bench.construct import parse_lengths
    from longrm.bench.haystack import load_haystack
    from longrm.models import resolve_model_path
    from longrm.synth.code_haystack import stdlib_code_haystack
    from longrm.synth.resume import OutputMismatchError, RowSink, fingerprint
    from longrm.synth.short2long import Padder, Short2LongConfig, run_settings, short2long
    from longrm.synth.short_rows import read_short_rows
    from longrm.synth.templates import Templates

    try:
        config = Short2LongConfig(
            lengths=tuple(parse_lengths(lengths)),
            seed=seed,
            depth=depth,
            variant=variant,
            key_chunks=key_chunks,
            chunk_tokens=chunk_tokens,
            key_share=key_share,
            top_chunks=top_chunks,
            min_chunk_score=min_chunk_score,
        )
        templates = Templates.load(variant, prompts)
    except (ValueError, OSError) as err:
        raise fail(str(err)) from None
    read = read_or_fail(
        lambda: read_short_rows(
            input_path, skip_invalid=skip_invalid, limit=limit, need_question=not templates.question
        )
    )
    if not read.rows:
        raise fail(f"no rows to pad in {input_path}")
    try:
        source = (
            stdlib_code_haystack()
            if variant == "code" and haystack is None
            else load_haystack(haystack)
        )
    except (ValueError, FileNotFoundError) as err:
        raise fail(f"--haystack: {err}") from None
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
    settings = run_settings(
        config,
        input_fingerprint=fingerprint(input_path),
        model=model,
        haystack=source.description,
        templates=templates,
    )
    try:
        sink = RowSink(out, settings)
    except OutputMismatchError as err:
        raise fail(str(err)) from None
    padder = Padder(tokenizer, source, templates, config)

    progress = RunProgress("padding", "rows/min", f"rows already in {out}")

    with progress:
        summary = short2long(
            read.rows, padder, sink, on_start=progress.start, on_row=progress.advance
        )
    try:
        where = sink.finish()
    except ValueError as err:
        raise fail(str(err)) from None
    console.print(
        f"rows in: {summary.rows_in} ({len(read.skipped)} invalid skipped); "
        f"haystack: {source.description}"
    )
    for label, stats in summary.lengths.items():
        errors = stats.length_errors
        mean_error = 100 * sum(abs(e) for e in errors) / len(errors) if errors else 0.0
        chunks = (
            f"; key chunks: {stats.key_chunk_rows} rows, {stats.kept_chunks} of "
            f"{stats.chunks} chunks kept"
            if stats.key_chunk_rows
            else ""
        )
        console.print(
            f"{label}: {stats.written} written, {stats.resumed} resumed, {stats.skipped} "
            f"skipped; mean length error {mean_error:.1f}%{chunks}"
        )
    for reason, count in summary.skip_reasons.most_common():
        console.print(f"[yellow]skipped {count}[/]: {summary.first_skip[reason]}")
    console.print(f"rows: {where}\nsettings: {sink.settings_path}")
    flags: dict[str, str | None] = {
        "--in": str(input_path),
        "--out": str(out),
        "--lengths": lengths,
        "--model": model,
        "--seed": str(seed),
        "--depth": depth,
        "--variant": variant,
        "--haystack": haystack,
        "--key-chunks": key_chunks if key_chunks != "auto" else None,
        "--chunk-tokens": str(chunk_tokens) if chunk_tokens != 512 else None,
        "--key-share": str(key_share) if key_share != 0.5 else None,
        "--top-chunks": str(top_chunks) if top_chunks != 4 else None,
        "--min-chunk-score": str(min_chunk_score) if min_chunk_score != 0.3 else None,
        "--prompts": str(prompts) if prompts else None,
        "--limit": str(limit) if limit is not None else None,
    }
    argv = [part for k, v in flags.items() if v is not None for part in (k, v)]
    argv += ["--skip-invalid"] * skip_invalid
    console.print("reproduce: longrm synth short2long " + shlex.join(argv))
