"""Load on `longrm serve` over loopback: concurrent clients against one request at a time.

An RL loop asks for the reward of each rollout as it finishes, so the requests are OpenRLHF
`/get_reward` calls of one query each: P prompts of about `--context` tokens (Python's own
documentation as text), N rollouts per prompt (Best-of-N), the rollouts of two prompts arriving
in shuffled order (as rollouts of one generation batch finish). The same requests, in the same
order, go through one server twice:

- one at a time: a single client waits for each answer before sending the next, so the worker
  never holds more than one request (no batching);
- loaded: `--clients` concurrent clients, so requests queue and the worker batches them,
  running the units of a batch prompt by prompt.

Throughput, p50/p99 latency and errors of both, and their ratio, go to a JSON file.

    python benchmarks/serve_load.py                              # 50 prompts x 4, 2K, 8 clients
    python benchmarks/serve_load.py --prompts 4 --context 512    # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx


def build_requests(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Return the /get_reward bodies in arrival order."""
    from transformers import AutoTokenizer

    from longrm.bench.haystack import python_docs_paragraphs
    from longrm.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model))
    paragraphs = list(python_docs_paragraphs())
    rng = random.Random(args.seed)
    rng.shuffle(paragraphs)
    requests = []
    cursor = 0
    for p in range(args.prompts):
        context: list[str] = []
        while len(tokenizer("\n\n".join(context)).input_ids) < args.context:
            context.append(paragraphs[cursor % len(paragraphs)])
            cursor += 1
        question = f"Question {p}: summarise what the documentation above explains."
        messages = [{"role": "user", "content": "\n\n".join(context) + "\n\n" + question}]
        prompt = str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
        for r in range(args.n):
            words = " ".join(context).split()
            response = f"Rollout {r}: " + " ".join(rng.sample(words, min(30, len(words))))
            requests.append({"query": [prompt + response + "<|im_end|>"], "prompts": [prompt]})
    window = 2 * args.n  # rollouts of two prompts finish in any order
    ordered = []
    for start in range(0, len(requests), window):
        chunk = requests[start : start + window]
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
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.5)


def run(url: str, requests: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Send the requests with `clients` concurrent clients; return throughput and latency."""
    latencies: list[float] = []
    errors = 0
    rewards: list[float | None] = [None] * len(requests)

    def send(i: int) -> None:
        nonlocal errors
        t = time.perf_counter()
        try:
            response = httpx.post(f"{url}/get_reward", json=requests[i], timeout=600)
            response.raise_for_status()
            rewards[i] = response.json()["rewards"][0]
        except Exception:
            errors += 1
        latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, range(len(requests))))
    seconds = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "clients": clients,
        "requests": len(requests),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(requests) / seconds, 3),
        "p50_latency_s": round(cuts[49], 3),
        "p99_latency_s": round(cuts[98], 3),
        "errors": errors,
        "rewards": rewards,
    }


def batch_sizes(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            if s.name in ("longrm_batch_size_sum", "longrm_batch_size_count"):
                values[s.name] = s.value
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--kind", default="likelihood")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--n", type=int, default=4, help="rollouts per prompt (Best-of-N)")
    parser.add_argument("--context", type=int, default=2048, help="prompt tokens")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()

    requests = build_requests(args)
    port = free_port()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkdtemp(prefix="serve-load-")) / "server.log"  # read when it fails
    server = start_server(args, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        run(url, requests[:2], 1)  # warm-up: first-call allocations
        baseline = run(url, requests, 1)
        before = batch_sizes(url)
        loaded = run(url, requests, args.clients)
        after = batch_sizes(url)
    finally:
        server.terminate()
        server.wait(timeout=30)
    calls = after["longrm_batch_size_sum"] - before.get("longrm_batch_size_sum", 0.0)
    batches = after["longrm_batch_size_count"] - before.get("longrm_batch_size_count", 0.0)
    same = all(
        a is not None and b is not None and abs(a - b) < 1e-3
        for a, b in zip(baseline["rewards"], loaded["rewards"], strict=True)
    )
    rows = {"one_at_a_time": baseline, "loaded": loaded}
    for row in rows.values():
        row.pop("rewards")
    result = {
        "setup": {
            "model": args.model,
            "kind": args.kind,
            "prompts": args.prompts,
            "rollouts_per_prompt": args.n,
            "context_tokens": args.context,
            "clients": args.clients,
            "max_batch": args.max_batch,
            "endpoint": "/get_reward, one query per request",
            "machine": platform.machine(),
            "note": args.note,
        },
        **rows,
        "mean_batch_size_loaded": round(calls / batches, 2) if batches else None,
        "throughput_ratio": round(loaded["requests_per_s"] / baseline["requests_per_s"], 2),
        "same_rewards": same,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
