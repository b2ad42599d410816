"""Load on `longrm serve` over loopback: concurrent clients against one request at a time, through
the three ways an RL trainer asks for rewards.

An RL loop asks for the reward of each rollout as it finishes. The workload: P prompts of about
`--context` tokens (Python's own documentation as text, counted with the reward model's
tokenizer), N rollouts per prompt (Best-of-N). The policy is not the reward model: its prompts are
rendered with a FOREIGN chat template, ChatML without a system turn
(`<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n`), which the server must read back
into chat turns (serve/families.py) before the reward model renders them again with its own
template (SmolLM2's, which adds a system turn). One server process, started once, answers every
mode:

- `openrlhf`: POST /get_reward with one query per request, as OpenRLHF 0.11's
  `SingleTurnAgentExecutor` sends it for each finished rollout: `query` = [prompt + response +
  `<|im_end|>`] (the EOS token the policy generated), `prompts` = [prompt], `labels` = [""] (no
  label column). Every answer's `extra_logs`/`splits` must show the prompt cut where it was given
  and read by a template family (not as plain text), as one user turn.
- `slime`: POST /slime/reward with slime's `remote_rm` body, one sample per request:
  {"prompt": the rendered prompt text, "response": the response text (SGLang's text skips special
  tokens, so no `<|im_end|>`), "label": null}; the answer must be a bare number.
- `trl`: the shipped `longrm.integrations.trl.RemoteReward` callable, called as GRPOTrainer calls
  an async reward function: `prompts` (the conversation as messages, once per completion),
  `completions` (one assistant message each), `completion_ids`, `trainer_state`; one call per
  prompt group with the group's N completions, which it sends as one /v1/score request. The
  `--clients` callers are coroutines on ONE event loop sharing ONE RemoteReward, not threads:
  TRL awaits async reward functions on a single loop of its own, and the client keeps one
  connection pool per loop, so threads (a loop and a pool each) would load the server in a way
  TRL never does.

`openrlhf` and `slime` requests go in arrival order, the rollouts of two prompts shuffled
together (as rollouts of one generation batch finish); their clients are threads each opening a
connection per request, as OpenRLHF's and slime's aiohttp sessions per call do. No client
retries (RemoteReward's are turned off): a refused request counts as an error. Each mode runs
the same requests, in the same order, twice:

- one at a time: a single client waits for each answer before sending the next, so the worker
  never holds more than one request (no batching across requests);
- loaded: `--clients` concurrent clients, so requests queue and the worker batches them,
  running the units of a batch prompt by prompt.

Per mode and run: throughput (requests and rollouts per second), p50/p99 latency, errors, the
mean batch size the worker ran (from the server's /metrics: model calls per batch), the loaded
to one-at-a-time throughput ratio, and whether every rollout's reward is the same in both runs.
Across modes, the reward of each (prompt, rollout) must be the same through all three. All of it
goes to a JSON file (`--out`), and a markdown table for the README to stdout.

    python benchmarks/serve_load.py             # 50 prompts x 4, 2K, 8 clients: 74 min idle
    python benchmarks/serve_load.py --prompts 4 --context 512 --out /tmp/load.json  # a look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

MODES = ("openrlhf", "slime", "trl")
#: rewards "identical" up to float noise: a batch encodes a shared prompt once (prefix cache)
TOLERANCE = 1e-3
#: the foreign policy template: ChatML without a system turn
USER_HEADER, END, REPLY_HEADER = "<|im_start|>user\n", "<|im_end|>", "<|im_start|>assistant\n"


@dataclass(frozen=True)
class Rollout:
    """One rollout: its prompt's user message, the policy's rendering of it, the response."""

    prompt: int
    index: int
    content: str
    rendered: str
    response: str
    response_ids: list[int]


def policy_prompt(content: str) -> str:
    """Return the prompt as the foreign policy template renders it, generation prompt added."""
    return f"{USER_HEADER}{content}{END}\n{REPLY_HEADER}"


def build_rollouts(args: argparse.Namespace) -> list[list[Rollout]]:
    """Return the rollouts, grouped by prompt."""
    from transformers import AutoTokenizer

    from longrm.bench.haystack import python_docs_paragraphs
    from longrm.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model))
    paragraphs = list(python_docs_paragraphs())
    rng = random.Random(args.seed)
    rng.shuffle(paragraphs)
    groups = []
    cursor = 0
    for p in range(args.prompts):
        context: list[str] = []
        while len(tokenizer("\n\n".join(context)).input_ids) < args.context:
            context.append(paragraphs[cursor % len(paragraphs)])
            cursor += 1
        question = f"Question {p}: summarise what the documentation above explains."
        content = "\n\n".join(context) + "\n\n" + question
        words = " ".join(context).split()
        group = []
        for r in range(args.n):
            response = f"Rollout {r}: " + " ".join(rng.sample(words, min(30, len(words))))
            ids = tokenizer(response, add_special_tokens=False).input_ids
            group.append(Rollout(p, r, content, policy_prompt(content), response, ids))
        groups.append(group)
    return groups


def arrival_order(groups: list[list[Rollout]], seed: int) -> list[Rollout]:
    """Return the rollouts as they finish: those of two prompts in any order."""
    rng = random.Random(seed + 1)
    ordered = []
    for start in range(0, len(groups), 2):
        chunk = [r for g in groups[start : start + 2] for r in g]
        rng.shuffle(chunk)
        ordered += chunk
    return ordered


def free_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "longrm", "serve", "--model", args.model, "--kind", args.kind,
        "--port", str(port), "--max-batch", str(args.max_batch), "--queue-size", "256",
    ]  # fmt: skip
    if args.request_timeout is not None:
        cmd += ["--request-timeout", str(args.request_timeout)]
    with log.open("wb") as fh:
        process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.5)


# -- what each mode sends ------------------------------------------------------------------------


class Tally:
    """What one run's clients saw: rewards by (prompt, rollout), latencies, errors, splits."""

    def __init__(self) -> None:
        self.rewards: dict[tuple[int, int], float | None] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error: str | None = None
        self.splits: Counter[str] = Counter()
        self.lock = threading.Lock()  # client threads count into one tally

    def failed(self, err: BaseException) -> None:
        with self.lock:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{type(err).__name__}: {err}"[:300]


def send_openrlhf(url: str, rollout: Rollout, tally: Tally) -> None:
    """One /get_reward call as OpenRLHF 0.11 makes it for a finished rollout."""
    body = {
        "query": [rollout.rendered + rollout.response + END],
        "prompts": [rollout.rendered],
        "labels": [""],
    }
    reply = httpx.post(f"{url}/get_reward", json=body, timeout=600)
    reply.raise_for_status()
    out = reply.json()
    [split] = out["splits"]
    logs = out["extra_logs"]
    # recognised: cut at the given prompt, read by a template family, one user turn
    recognised = (
        logs["split_family"][0] > 0
        and logs["split_at_prompt"] == [1.0]
        and split["at"] == "prompt"
        and split["turns"] == 1
    )
    with tally.lock:
        tally.splits[f"{split['template']}:{int(logs['split_family'][0])}"] += 1
        tally.splits["recognised" if recognised else "not_recognised"] += 1
    tally.rewards[(rollout.prompt, rollout.index)] = out["rewards"][0]


def send_slime(url: str, rollout: Rollout, tally: Tally) -> None:
    """One /slime/reward call as slime's remote_rm makes it for a sample."""
    body = {"prompt": rollout.rendered, "response": rollout.response, "label": None}
    reply = httpx.post(f"{url}/slime/reward", json=body, timeout=600)
    reply.raise_for_status()
    value = reply.json()
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise TypeError(f"/slime/reward answered {value!r}, not a number")
    tally.rewards[(rollout.prompt, rollout.index)] = value


def run_threads(
    url: str,
    rollouts: list[Rollout],
    clients: int,
    send: Callable[[str, Rollout, Tally], None],
) -> tuple[Tally, float]:
    """Send one request per rollout from `clients` threads; return what they saw and the time."""
    tally = Tally()

    def one(rollout: Rollout) -> None:
        t = time.perf_counter()
        try:
            send(url, rollout, tally)
        except Exception as err:
            tally.failed(err)
        tally.latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, rollouts))
    return tally, time.perf_counter() - start


def run_trl(url: str, groups: list[list[Rollout]], clients: int) -> tuple[Tally, float]:
    """Call RemoteReward once per prompt group from `clients` coroutines on one event loop."""
    from longrm.integrations.trl import RemoteReward

    tally = Tally()
    reward = RemoteReward(url, retries=0)  # a refused request counts as an error, not a retry

    async def call(group: list[Rollout]) -> None:
        messages = [{"role": "user", "content": group[0].content}]
        t = time.perf_counter()
        try:
            rewards = await reward(
                prompts=[messages] * len(group),
                completions=[[{"role": "assistant", "content": r.response}] for r in group],
                completion_ids=[r.response_ids for r in group],
                trainer_state=None,
            )
            for r, value in zip(group, rewards, strict=True):
                tally.rewards[(r.prompt, r.index)] = value
        except Exception as err:
            tally.failed(err)
        tally.latencies.append(time.perf_counter() - t)

    async def main() -> float:
        queue = list(groups)

        async def caller() -> None:
            while queue:
                await call(queue.pop(0))

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        seconds = time.perf_counter() - start
        await reward.client.aclose()
        return seconds

    return tally, asyncio.run(main())


# -- measuring ----------------------------------------------------------------------------------


def batch_counts(url: str) -> tuple[float, float]:
    """Return the server's (model calls, batches) so far, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            if s.name in ("longrm_batch_size_sum", "longrm_batch_size_count"):
                values[s.name] = s.value
    return values.get("longrm_batch_size_sum", 0.0), values.get("longrm_batch_size_count", 0.0)


def quantile(values: list[float], q: int) -> float:
    """Return the q-th percentile (statistics.quantiles needs two values)."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def measure(
    url: str, mode: str, groups: list[list[Rollout]], order: list[Rollout], clients: int
) -> tuple[dict[str, Any], Tally]:
    """Run one mode's requests with `clients` clients; return its row and what it saw."""
    calls0, batches0 = batch_counts(url)
    if mode == "trl":
        tally, seconds = run_trl(url, groups, clients)
        requests = len(groups)
    else:
        send = send_openrlhf if mode == "openrlhf" else send_slime
        tally, seconds = run_threads(url, order, clients, send)
        requests = len(order)
    calls1, batches1 = batch_counts(url)
    batches = batches1 - batches0
    row: dict[str, Any] = {
        "clients": clients,
        "requests": requests,
        "rollouts": len(order),
        "seconds": round(seconds, 2),
        "requests_per_s": round(requests / seconds, 3),
        "rollouts_per_s": round(len(order) / seconds, 3),
        "p50_latency_s": round(quantile(tally.latencies, 50), 3),
        "p99_latency_s": round(quantile(tally.latencies, 99), 3),
        "errors": tally.errors,
        "no_reward": sum(tally.rewards.get((r.prompt, r.index)) is None for r in order),
        "mean_batch_size": round((calls1 - calls0) / batches, 2) if batches else None,
    }
    if tally.first_error is not None:
        row["first_error"] = tally.first_error
    if tally.splits:
        row["splits"] = dict(tally.splits)
    return row, tally


def compare(
    a: dict[tuple[int, int], float | None], b: dict[tuple[int, int], float | None], keys: list[Any]
) -> dict[str, Any]:
    """Return whether every rollout has a reward in both and they agree within TOLERANCE, the
    largest difference among those compared, and how many lacked a reward in either.
    """
    diffs, missing = [], 0
    for key in keys:
        x, y = a.get(key), b.get(key)
        if x is None or y is None:
            missing += 1
        else:
            diffs.append(abs(x - y))
    worst = max(diffs, default=0.0)
    return {
        "same_rewards": missing == 0 and worst < TOLERANCE,
        "max_reward_difference": float(f"{worst:.3g}") if diffs else None,
        "missing": missing,
    }


def table(result: dict[str, Any]) -> str:
    """Return the runs as a markdown table for the README."""
    lines = [
        "| mode | clients | req/s | rollouts/s | p50 s | p99 s | errors | mean batch | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        if mode not in result:
            continue
        block = result[mode]
        for name in ("one_at_a_time", "loaded"):
            row = block[name]
            ratio = f"{block['throughput_ratio']:.2f}x" if name == "loaded" else ""
            lines.append(
                f"| {mode} | {row['clients']} | {row['requests_per_s']:.3f} | "
                f"{row['rollouts_per_s']:.3f} | {row['p50_latency_s']:.2f} | "
                f"{row['p99_latency_s']:.2f} | {row['errors']} | {row['mean_batch_size']} | "
                f"{ratio} |"
            )
    return "\n".join(lines)


ENDPOINTS = {
    "openrlhf": "/get_reward, one query per request, foreign ChatML prompt (OpenRLHF 0.11)",
    "slime": "/slime/reward, one sample per request, foreign ChatML prompt text (slime remote_rm)",
    "trl": "RemoteReward, one call per prompt group -> one /v1/score of N responses (TRL GRPO)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--kind", default="likelihood")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ",".join(MODES)
    )
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--n", type=int, default=4, help="rollouts per prompt (Best-of-N)")
    parser.add_argument("--context", type=int, default=2048, help="prompt tokens")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        help="the server's --request-timeout (default: its own); raise it on a busy machine",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: choose from {', '.join(MODES)}, got {args.modes!r}")

    groups = build_rollouts(args)
    order = arrival_order(groups, args.seed)
    keys = [(r.prompt, r.index) for r in order]
    port = free_port()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkdtemp(prefix="serve-load-")) / "server.log"  # read when it fails
    server = start_server(args, port, log)
    url = f"http://127.0.0.1:{port}"
    blocks: dict[str, dict[str, Any]] = {}
    rewards: dict[str, dict[tuple[int, int], float | None]] = {}
    try:
        run_threads(url, order[:2], 1, send_openrlhf)  # warm-up: first-call allocations
        for mode in modes:
            baseline, one = measure(url, mode, groups, order, 1)
            loaded, many = measure(url, mode, groups, order, args.clients)
            blocks[mode] = {
                "endpoint": ENDPOINTS[mode],
                "one_at_a_time": baseline,
                "loaded": loaded,
                "throughput_ratio": round(loaded["requests_per_s"] / baseline["requests_per_s"], 2),
                **compare(one.rewards, many.rewards, keys),
            }
            if mode == "openrlhf":
                blocks[mode]["split_recognised"] = all(
                    run.get("splits", {}).get("recognised", 0) == len(order)
                    for run in (baseline, loaded)
                )
            rewards[mode] = one.rewards
    finally:
        server.terminate()
        server.wait(timeout=30)
    across = {}
    first = modes[0]
    for mode in modes[1:]:
        across[f"{mode}_vs_{first}"] = compare(rewards[first], rewards[mode], keys)
    result = {
        "setup": {
            "model": args.model,
            "kind": args.kind,
            "modes": modes,
            "prompts": args.prompts,
            "rollouts_per_prompt": args.n,
            "context_tokens": args.context,
            "clients": args.clients,
            "max_batch": args.max_batch,
            "request_timeout": args.request_timeout,
            "policy_template": "ChatML without a system turn (not the reward model's template)",
            "machine": platform.machine(),
            "note": args.note,
        },
        **blocks,
        "across_modes": across,
        "same_rewards": all(b["same_rewards"] for b in blocks.values())
        and all(c["same_rewards"] for c in across.values()),
        "errors": sum(b[r]["errors"] for b in blocks.values() for r in ("one_at_a_time", "loaded")),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print()
    print(table(result))


if __name__ == "__main__":
    main()
