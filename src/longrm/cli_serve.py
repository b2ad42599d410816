"""`longrm serve` (the HTTP reward service) and `longrm bon` (offline Best-of-N selection)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from longrm.cli_common import (
    ModelOpt,
    RunProgress,
    console,
    err_console,
    fail,
    reward_model_flags,
)
from longrm.options import RewardModelOptions
from longrm.serve import DEFAULT_QUEUE_WAIT, DEFAULT_REQUEST_TIMEOUT

# Served models write verdicts per request: a smaller budget than `longrm eval`'s.
SERVE_DEFAULTS = {"max_new_tokens": 512}
_FROM_FLAGS = RewardModelOptions()


@reward_model_flags(defaults=SERVE_DEFAULTS)
def serve_command(
    model: ModelOpt = "default",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LONGRM_API_KEY",
            help="Require 'Authorization: Bearer KEY' on every model endpoint (/health and "
            "/metrics stay open).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name in responses and /v1/models (default: --model).")
    ] = None,
    queue_size: Annotated[
        int,
        typer.Option(
            help="Requests that may wait for the model; more wait for a place (--queue-wait)."
        ),
    ] = 64,
    queue_wait: Annotated[
        float,
        typer.Option(
            help="Seconds a request that finds the queue full waits for a place before a 429 "
            "(verl fails its reward step on any 4xx, so a burst should wait, not be refused)."
        ),
    ] = DEFAULT_QUEUE_WAIT,
    max_batch: Annotated[
        int, typer.Option(help="Requests the worker takes from the queue at once.")
    ] = 16,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long an idle worker waits for requests arriving together.")
    ] = 5.0,
    request_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds from a request's arrival (queue wait included) to its answer, else a "
            "504. Below the RL frameworks' shortest client timeout (slime: 120 s), so the client "
            "sees the 504 and retries cleanly instead of giving up while its work still runs."
        ),
    ] = DEFAULT_REQUEST_TIMEOUT,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body accepted (413 above).")
    ] = 32 * 1024 * 1024,
    max_request_tokens: Annotated[
        int, typer.Option(help="Most tokens of prompts and responses per request (413 above).")
    ] = 1 << 20,
    unscored_reward: Annotated[
        float | None,
        typer.Option(
            help="The RL endpoints' reward (/get_reward, /classify, /slime/reward) where the "
            "model gave none (a judge's unparseable verdict): RL trainers need a number; default "
            "null. /get_reward's extra_logs.scored marks them 0."
        ),
    ] = None,
    policy_template: Annotated[
        str | None,
        typer.Option(
            help="The policy's tokenizer (a folder or HF id) whose chat template rendered the "
            "texts RL frameworks send: its markers split prompt from response. Without it the "
            "common template families are recognised (ChatML, Llama 3, Gemma, Mistral, Phi, "
            "DeepSeek).",
            metavar="MODEL_OR_FOLDER",
        ),
    ] = None,
    options: RewardModelOptions = _FROM_FLAGS,
) -> None:
    """Serve a reward model over HTTP: score, compare, rank, OpenRLHF's /get_reward, vLLM's
    /classify, slime's /slime/reward, OpenAI chat completions, /health and Prometheus /metrics.
    """
    import uvicorn

    from longrm.rm.load import load_reward_model, resolve_kind
    from longrm.serve.app import ServeSettings, create_app, endpoints
    from longrm.serve.service import load_policy_tokenizer

    if min(queue_size, max_batch, max_body_bytes, max_request_tokens) < 1:
        raise fail("--queue-size, --max-batch, --max-body-bytes, --max-request-tokens must be >= 1")
    if not request_timeout > 0 or not 0 <= queue_wait < request_timeout:
        raise fail("--request-timeout must be > 0 and --queue-wait between 0 and it")
    policy_tokenizer = None
    if policy_template:
        try:
            policy_tokenizer = load_policy_tokenizer(policy_template)
        except (ValueError, OSError) as err:
            raise fail(f"--policy-template {policy_template}: {err}") from None
    try:
        resolved = resolve_kind(model, options.kind)
        options = options.replace(kind=resolved)
        start = time.perf_counter()
        rm = load_reward_model(model, options)
    except (ValueError, OSError) as err:
        raise fail(str(err)) from None
    settings = ServeSettings(
        model_name=name or model,
        kind=resolved,
        api_key=api_key or None,
        max_body_bytes=max_body_bytes,
        max_request_tokens=max_request_tokens,
        queue_size=queue_size,
        queue_wait=queue_wait,
        max_batch=max_batch,
        batch_wait=batch_wait_ms / 1000,
        request_timeout=request_timeout,
        max_new_tokens=options.max_new_tokens,
        unscored_reward=unscored_reward,
        policy_template=policy_template,
    )
    try:
        app = create_app(rm, settings, policy_tokenizer)
    except ValueError as err:
        rm.close()
        raise fail(str(err)) from None
    if unscored_reward is None and resolved not in ("scalar", "likelihood"):
        err_console.print(
            "[yellow]a judge may give no reward: RL trainers (OpenRLHF, slime, verl) need a "
            "number, set --unscored-reward[/]"
        )
    err_console.print(
        f"serving {model} ({resolved}, loaded in {time.perf_counter() - start:.1f} s) on "
        f"http://{host}:{port}: {' '.join(endpoints())}; auth "
        f"{'on' if settings.api_key else 'off'}"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        rm.close()


@reward_model_flags(defaults=SERVE_DEFAULTS)
def bon_command(
    in_path: Annotated[
        Path,
        typer.Option(
            "--in",
            help="Rollouts JSONL: one prompt per line ('messages' or 'prompt', 'responses', "
            "optional 'id').",
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Picks JSONL (appended; a rerun resumes): SFT-ready 'messages'.")
    ],
    model: ModelOpt = "default",
    skip_invalid: Annotated[bool, typer.Option(help="Skip bad rows (counted).")] = False,
    options: RewardModelOptions = _FROM_FLAGS,
) -> None:
    """Best-of-N: rank each prompt's rollouts, keep the best (and the ranking); resumable."""

    from longrm.bon import best_of_n, load_rollouts
    from longrm.items import ItemError
    from longrm.rm.load import load_reward_model, resolve_kind

    try:
        rows, skipped = load_rollouts(in_path, skip_invalid=skip_invalid)
    except (ItemError, FileNotFoundError) as err:
        hint = "" if isinstance(err, FileNotFoundError) else " (--skip-invalid skips such rows)"
        raise fail(f"{err}{hint}") from None
    if skipped:
        err_console.print(f"[yellow]skipped {len(skipped)} invalid rows[/]; first: {skipped[0]}")
    try:
        resolved = resolve_kind(model, options.kind)
        options = options.replace(kind=resolved)
        rm = load_reward_model(model, options)
    except (ValueError, OSError) as err:
        raise fail(str(err)) from None
    progress = RunProgress("picking", "prompts/s", f"prompts already picked in {out}")

    try:
        with progress:
            outcome = best_of_n(rm, rows, out, on_start=progress.start, on_row=progress.advance)
    finally:
        rm.close()
    errors = out.with_name(out.name + ".errors.jsonl")
    if outcome.failed:
        errors.write_text("".join(json.dumps(f) + "\n" for f in outcome.failed), encoding="utf-8")
    elif errors.exists():
        errors.unlink()  # an earlier run's failures were all picked now
    console.print(
        f"picks: {outcome.picked} now, {outcome.resumed} from an earlier run, "
        f"{len(outcome.failed)} failed, {len(skipped)} invalid rows skipped"
    )
    console.print(f"picks: {out}")
    if outcome.failed:
        raise fail(
            f"{len(outcome.failed)} prompts got no ranking (reasons in {errors}); run the same "
            "command again to retry them"
        )
