"""The trainer integrations against a real `python -m longrm serve` process on loopback.

TRL: `RemoteReward` inside a 2-step GRPOTrainer run on the tiny causal model; its rewards equal
direct `/v1/score` answers, one request per prompt. verl: the shipped reward manager on a
one-rollout batch laid out as verl's reward loop lays it out (verl itself needs ray and
tensordict, so the batch is a small stand-in with DataProto's indexing: `batch` tensors,
`non_tensor_batch` numpy arrays); verl 0.9.1's own code, read from its wheel (`make setup`
downloads it, nothing is installed), resolves the manager from the documented config lines,
scores the same rollout through `/classify`, and lays out the reward tensor.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from conftest import free_port
from test_serve import ServeProcess

from longrm.integrations.client import RemoteScoreError, ScoreClient, as_messages
from longrm.integrations.trl import RemoteReward
from longrm.integrations.verl import LongRMRewardManager

CONTEXT = "The ferry Orla returned at dusk with two crates of lamp oil. " * 6
QUESTIONS = [f"{CONTEXT}\nQuestion {i}: what did the ferry carry?" for i in range(4)]
VERL_WHEEL = Path(sys.prefix) / "wheels" / "verl-0.9.1-py3-none-any.whl"
VERL_HINT = f"{VERL_WHEEL} is missing: pip download --no-deps verl==0.9.1 -d {VERL_WHEEL.parent}"


@pytest.fixture(scope="module")
def service(tiny_scalar: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `longrm serve` process on the tiny scalar RM; yields its base URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    server = ServeProcess(
        log, "--model", tiny_scalar, "--kind", "scalar", "--name", "tiny-rm",
        "--max-request-tokens", "3000",
    )  # fmt: skip
    try:
        yield server.wait_ready(timeout=120)
    finally:
        server.stop()
    assert "Traceback" not in log.read_text(), log.read_text()


def direct_scores(url: str, prompt: Any, responses: list[str]) -> list[float]:
    """Return `/v1/score`'s answer for a prompt given as text or messages."""
    key = "prompt" if isinstance(prompt, str) else "messages"
    reply = httpx.post(f"{url}/v1/score", json={key: prompt, "responses": responses}, timeout=60)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["scores"])


def score_requests(url: str) -> float:
    """Return how many `/v1/score` requests the service has answered with 200 (Prometheus)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pattern = r'longrm_requests_total\{endpoint="/v1/score",status="200"\} ([0-9.e+]+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


# ------------------------------------------------------------------------------------------------
# the shared client


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("longrm.integrations.trl", ["trl", "torch", "transformers", "longrm.integrations.verl"]),
        ("longrm.integrations.verl", ["verl", "trl", "transformers", "longrm.integrations.trl"]),
    ],
)
def test_each_integration_imports_only_what_it_uses(module: str, absent: list[str]) -> None:
    code = f"import sys, {module}; print([m for m in {absent!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_prompts_become_messages_and_bad_ones_are_named() -> None:
    assert as_messages("Q?", "p") == [{"role": "user", "content": "Q?"}]
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert as_messages(parts, "p") == [{"role": "user", "content": "ab"}]
    with pytest.raises(ValueError, match=r"prompts\[1\]\[0\]: expected a chat message"):
        as_messages([{"text": "no role"}], "prompts[1]")
    with pytest.raises(ValueError, match=r"p\[0\]\.content\[0\]: only text parts"):
        as_messages([{"role": "user", "content": [{"type": "image_url"}]}], "p")
    with pytest.raises(ValueError, match="http:// or https://"):
        ScoreClient("127.0.0.1:8000")


def test_client_names_the_service_error(service: str) -> None:
    too_long = "lamp oil " * 2000  # over the service's --max-request-tokens 3000
    client = ScoreClient(service)
    with pytest.raises(RemoteScoreError, match=r"answered 413: .*--max-request-tokens"):
        asyncio.run(client.score([{"role": "user", "content": too_long}], ["x"]))
    nobody = ScoreClient(f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(RemoteScoreError, match=r"no answer after 1 retries .*longrm serve"):
        asyncio.run(nobody.score([{"role": "user", "content": "Q?"}], ["x"]))


# ------------------------------------------------------------------------------------------------
# TRL


def test_remote_reward_groups_completions_by_prompt(service: str) -> None:
    reward = RemoteReward(service, name="rm")
    prompts = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[0], QUESTIONS[1], QUESTIONS[0]]
    completions = ["Lamp oil.", "Fish.", "Two crates of lamp oil.", "Nothing.", "Oil"]
    before = score_requests(service)
    got = asyncio.run(reward(prompts=prompts, completions=completions, completion_ids=None))
    assert score_requests(service) - before == 2  # one request per distinct prompt
    first = direct_scores(service, QUESTIONS[0], ["Lamp oil.", "Two crates of lamp oil.", "Oil"])
    second = direct_scores(service, QUESTIONS[1], ["Fish.", "Nothing."])
    expected = [first[0], second[0], first[1], second[1], first[2]]
    assert got == pytest.approx(expected, abs=1e-5)
    assert reward.__name__ == "rm"
    with pytest.raises(ValueError, match=r"completions\[1\]: expected text"):
        asyncio.run(reward(prompts=["a", "b"], completions=["x", 3]))


class RecordingReward(RemoteReward):
    """RemoteReward that keeps what TRL passed and what it returned, for the test to check."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[tuple[list[Any], list[Any], list[float | None]]] = []

    async def __call__(
        self, prompts: list[Any], completions: list[Any], completion_ids: Any = None, **columns: Any
    ) -> list[float | None]:
        rewards = await super().__call__(prompts, completions, completion_ids, **columns)
        self.calls.append((prompts, completions, rewards))
        return rewards


def test_remote_reward_in_a_grpo_run(service: str, tiny_causal: str, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS]
    config = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, max_steps=2, per_device_train_batch_size=4,
        num_generations=2, max_completion_length=8, logging_steps=1, report_to="none",
        save_strategy="no", seed=0, bf16=False,
    )  # fmt: skip
    reward = RecordingReward(service)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_causal),
        processing_class=AutoTokenizer.from_pretrained(tiny_causal),
        reward_funcs=[reward],
        args=config,
        train_dataset=Dataset.from_list(rows),
    )
    before = score_requests(service)
    trainer.train()
    assert len(reward.calls) == 2  # one generation batch per step
    # 2 steps x 2 prompts: one request per prompt, holding both of its completions
    assert score_requests(service) - before == 2 * 2
    logged = [
        h["rewards/longrm/mean"] for h in trainer.state.log_history if "rewards/longrm/mean" in h
    ]
    for (prompts, completions, rewards), mean in zip(reward.calls, logged, strict=True):
        assert len(rewards) == 4 and None not in rewards
        for prompt, completion, got in zip(prompts, completions, rewards, strict=True):
            [expected] = direct_scores(service, prompt, [completion[0]["content"]])
            assert got == pytest.approx(expected, abs=1e-5)
        assert mean == pytest.approx(sum(r or 0.0 for r in rewards) / 4, abs=1e-4)


# ------------------------------------------------------------------------------------------------
# verl


def verl_source(path: str) -> str:
    """Return a source file of verl 0.9.1, read from its wheel (no verl install)."""
    if not VERL_WHEEL.exists():
        pytest.skip(VERL_HINT)
    with zipfile.ZipFile(VERL_WHEEL) as wheel:
        return wheel.read(path).decode()


def verl_functions(
    path: str, names: list[str], scope: dict[str, Any], cls: str | None = None
) -> dict[str, Any]:
    """Return verl's own functions `names` (methods of `cls` when given) from `path`, compiled
    with `scope` as their globals (what they use of their module's imports).
    """
    tree = ast.parse(verl_source(path))
    body = tree.body
    if cls is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    found = [
        n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in names
    ]
    assert sorted(n.name for n in found) == sorted(names), f"verl 0.9.1 {path} changed"
    for node in found:
        node.decorator_list = []  # @classmethod: called as plain functions here
    module = ast.Module(body=list(found), type_ignores=[])
    exec(compile(module, f"verl-0.9.1/{path}", "exec"), scope)
    return {name: scope[name] for name in names}


@dataclass
class Row:
    """One rollout, as DataProto's `data[i]` (DataProtoItem) holds it."""

    batch: dict[str, torch.Tensor]
    non_tensor_batch: dict[str, Any]


@dataclass
class Rollouts:
    """A batch with DataProto's layout and indexing: `batch` tensors of equal first dimension,
    `non_tensor_batch` numpy object arrays; `data[i]` is a Row, `data[a:b]` a Rollouts.
    """

    batch: dict[str, torch.Tensor]
    non_tensor_batch: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.batch.values())))

    def __getitem__(self, index: int | slice) -> Any:
        tensors = {k: v[index] for k, v in self.batch.items()}
        rest = {k: v[index] for k, v in self.non_tensor_batch.items()}
        return Rollouts(tensors, rest) if isinstance(index, slice) else Row(tensors, rest)


def rollouts(
    tokenizer: Any, chats: list[list[dict[str, str]]], responses: list[str], width: int = 24
) -> Rollouts:
    """Return rollouts as verl's agent loop pads them: prompts left-padded, responses (ending in
    the end-of-turn token) right-padded to `width`, one attention mask over both.
    """
    prompt_ids = [
        tokenizer.apply_chat_template(
            c, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for c in chats
    ]
    response_ids = [
        tokenizer(r, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        for r in responses
    ]
    p_len = max(len(p) for p in prompt_ids)
    pad = tokenizer.pad_token_id
    prompts, resps, mask = [], [], []
    for p, r in zip(prompt_ids, response_ids, strict=True):
        assert len(r) <= width
        prompts.append([pad] * (p_len - len(p)) + p)
        resps.append(r + [pad] * (width - len(r)))
        mask.append([0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (width - len(r)))
    raw = np.empty(len(chats), dtype=object)
    raw[:] = chats
    return Rollouts(
        {
            "prompts": torch.tensor(prompts),
            "responses": torch.tensor(resps),
            "input_ids": torch.cat([torch.tensor(prompts), torch.tensor(resps)], dim=1),
            "attention_mask": torch.tensor(mask),
        },
        {"raw_prompt": raw, "data_source": np.array(["longrm"] * len(chats), dtype=object)},
    )


README = Path(__file__).resolve().parents[1] / "README.md"


def verl_config(url: str | None) -> dict[str, Any]:
    """Return verl 0.9.1's default `reward` config with README's override lines applied (the
    `longrm_url` one replaced by `url`, or left out when None).
    """
    config: dict[str, Any] = {
        "reward": {
            "num_workers": 8,
            "custom_reward_function": {"path": None, "name": "compute_score"},
            "reward_manager": {
                "source": "register",
                "name": "naive",
                "module": {"path": None, "name": "custom_reward_manager"},
            },
            "reward_model": {"enable": False},
        }
    }
    lines = re.findall(r"^\s*\+?(reward\.[\w.]+)=(\S+)", README.read_text(), re.MULTILINE)
    assert len(lines) == 4, f"README's verl lines changed: {lines}"
    for key, value in lines:
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if leaf == "longrm_url":
            if url is None:
                continue
            value = url
        node[leaf] = value
    return config


def test_verl_config_lines_load_the_manager() -> None:
    """verl's own loader (`load_extern_object`, what `source=importlib` calls) finds the class."""
    import importlib
    import os
    from typing import Optional

    scope = {"importlib": importlib, "os": os, "Optional": Optional}
    tree = ast.parse(verl_source("verl/utils/import_utils.py"))
    constants = [
        n for n in tree.body if isinstance(n, ast.Assign) and "PATH_PREFIX" in ast.unparse(n)
    ]
    exec(compile(ast.Module(body=constants, type_ignores=[]), "import_utils", "exec"), scope)
    fns = verl_functions("verl/utils/import_utils.py", ["load_module", "load_extern_object"], scope)
    manager = verl_config(None)["reward"]["reward_manager"]
    cls = fns["load_extern_object"](
        module_path=manager["module"]["path"], object_name=manager["name"]
    )
    assert cls is LongRMRewardManager
    with pytest.raises(ValueError, match=r"\+reward\.reward_kwargs\.longrm_url=http://HOST:PORT"):
        cls(config=verl_config(None), tokenizer=None, compute_score=None)
    enabled = verl_config("http://127.0.0.1:1")
    enabled["reward"]["reward_model"]["enable"] = True
    with pytest.raises(ValueError, match="reward.reward_model.enable=False"):
        cls(config=enabled, tokenizer=None, compute_score=None)


def test_verl_reward_manager_one_rollout(service: str, tokenizer: Any) -> None:
    chat = [{"role": "user", "content": QUESTIONS[2]}]
    data = rollouts(tokenizer, [chat], ["Two crates of lamp oil."])
    # built as verl's load_reward_manager and RewardLoopWorker build it
    manager = LongRMRewardManager(
        config=verl_config(service), tokenizer=tokenizer, compute_score=None,
        reward_router_address=None, reward_model_tokenizer=None,
    )  # fmt: skip
    out = asyncio.run(manager.run_single(data[0:1]))
    [expected] = direct_scores(service, chat, ["Two crates of lamp oil."])
    assert out["reward_score"] == pytest.approx(expected, abs=1e-5)
    assert out["reward_extra_info"] == {"longrm_reward": out["reward_score"]}

    # verl's own discriminative-RM path (compute_score_disrm -> _post_request -> /classify) on
    # the same rollout, with the served model's tokenizer as its reward-model tokenizer
    import aiohttp

    scope = {
        "aiohttp": aiohttp,
        "asyncio": asyncio,
        "logger": logging.getLogger("verl"),
        "DataProto": Any,
    }
    names = ["_post_request", "_preprocess_reward_inputs", "compute_score_disrm"]
    methods = verl_functions(
        "verl/experimental/reward_loop/reward_loop.py", names, scope, "RewardLoopWorker"
    )
    worker = type("RewardLoopWorker", (), methods)()
    worker.reward_router_address = service.removeprefix("http://")
    worker.input_tokenizer = worker.reward_model_tokenizer = tokenizer
    rollout_cfg = SimpleNamespace(name="vllm")
    worker.config = SimpleNamespace(
        reward=SimpleNamespace(
            reward_model=SimpleNamespace(rollout=rollout_cfg, model_path="tiny-rm")
        )
    )
    verl_out = asyncio.run(worker.compute_score_disrm(data[0:1]))
    assert verl_out["reward_score"] == pytest.approx(expected, abs=1e-5)


def test_verl_reward_tensor_layout(tokenizer: Any) -> None:
    """The reward sits at each rollout's last response token, as verl's own code puts it."""
    chats = [[{"role": "user", "content": q}] for q in QUESTIONS[:3]]
    data = rollouts(tokenizer, chats, ["Oil.", "Two crates of lamp oil, at dusk.", "No."])
    scores = [0.5, -1.25, 2.0]
    ours = LongRMRewardManager.assemble_rm_scores(data, scores)
    lengths = [
        len(tokenizer(r, add_special_tokens=False).input_ids) + 1
        for r in ["Oil.", "Two crates of lamp oil, at dusk.", "No."]
    ]
    expected = torch.zeros(3, 24)
    for i, (n, s) in enumerate(zip(lengths, scores, strict=True)):
        expected[i, n - 1] = s
    assert torch.equal(ours, expected)
    base = verl_functions(
        "verl/experimental/reward_loop/reward_manager/base.py", ["assemble_rm_scores"],
        {"torch": torch, "DataProto": Any}, "RewardManagerBase",
    )  # fmt: skip
    assert torch.equal(base["assemble_rm_scores"](None, data, scores), ours)


def test_verl_rollout_without_raw_prompt_is_named(tokenizer: Any) -> None:
    data = rollouts(tokenizer, [[{"role": "user", "content": "Q?"}]], ["A."])
    del data.non_tensor_batch["raw_prompt"]
    manager = LongRMRewardManager(config=verl_config("http://127.0.0.1:1"), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="non_tensor_batch has no 'raw_prompt'"):
        asyncio.run(manager.run_single(data[0:1]))
