"""RL frameworks' own requests against `longrm serve` processes, with a policy whose chat template
is not the reward model's.

The reward model is a tiny scalar RM on SmolLM2's tokenizer (ChatML with a default system turn).
The policies are the same vocabulary with other chat templates, written into a copy of the
tokenizer's files: ChatML without a system turn, a Llama-3-style template, ChatML with Qwen3-style
reasoning blocks, and one outside every known family (which needs --policy-template). Each
reward must equal /v1/score's for the same conversation sent as messages. The server is a
`python -m longrm serve` process as it starts by default; the same model told the odd policy's
template (--policy-template) runs in this process, under uvicorn in a thread.

- OpenRLHF 0.11.2: its own `SingleTurnAgentExecutor.execute` (installed --no-deps), with a fake
  vLLM engine that returns the policy's tokens, so the query and prompt are exactly what it sends.
- slime: `remote_rm`'s request and reply, built from slime's source (slime/rollout/rm_hub,
  slime/utils/types.py: `Sample.prompt` text or messages, `response`, `label`; the JSON answer is
  the reward, or is read at `--reward-key`).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from test_serve import ServeProcess, _error, _post, serve_in_thread

from longrm.items import Messages
from longrm.rm.load import RewardModelOptions, load_reward_model

CONTEXT = "The ferry Orla returned at dusk with two crates of lamp oil and a crate of nails. " * 4
CONVERSATIONS: list[Messages] = [
    [{"role": "user", "content": f"{CONTEXT}\nWhat did the ferry carry?"}],
    [
        {"role": "system", "content": "Answer from the context only."},
        {"role": "user", "content": f"{CONTEXT}\nWhat did the ferry carry?"},
    ],
    [
        {"role": "system", "content": "Answer from the context only."},
        {"role": "user", "content": f"{CONTEXT}\nWhen did the ferry return?"},
        {"role": "assistant", "content": "At dusk."},
        {"role": "user", "content": "And what did it carry?"},
    ],
]
ANSWERS = ["Two crates of lamp oil and a crate of nails.", "Fish.", "Nothing at all."]

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
    "'<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
#: a template of no known family: only --policy-template can split what it renders
ODD = (
    "{% for m in messages %}{{ '### ' + m['role'] + ':\n' + m['content'] + '\n\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### assistant:\n' }}{% endif %}"
)
#: name: (template, special tokens, the policy's reply around the answer, family code logged)
POLICIES: dict[str, tuple[str, dict[str, str], str, int]] = {
    # ChatML, as the reward model's template without its default system turn: its markers read it
    "chatml-no-system": (CHATML, {}, "{answer}<|im_end|>", 2),
    "llama3": (
        LLAMA3,
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
        "{answer}<|eot_id|>",
        4,
    ),
    "qwen3-thinking": (
        CHATML,
        {},
        "<think>\nThe context lists the cargo.\n</think>\n\n{answer}<|im_end|>",
        2,
    ),
    "odd": (ODD, {"eos_token": "<|endoftext|>"}, "{answer}<|endoftext|>", 1),
}


def _policy_folder(source: str, folder: Path, template: str, special: dict[str, str]) -> Path:
    """Copy the tokenizer's files, with another chat template (in tokenizer_config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(source) / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((Path(source) / "tokenizer_config.json").read_text())
    config.update(special, chat_template=template)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def policies(default_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The policy tokenizers, loaded from their folders (as OpenRLHF and slime load them)."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("policies")
    loaded = {}
    for name, (template, special, _, _) in POLICIES.items():
        folder = _policy_folder(default_model_path, root / name, template, special)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert tokenizer.chat_template == template
        tokenizer.folder = str(folder)
        loaded[name] = tokenizer
    return loaded


@pytest.fixture(scope="module")
def urls(
    tiny_scalar: str, policies: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A `longrm serve` process as it starts by default ("plain"), and the same model served
    in this process with --policy-template naming the odd policy ("told").
    """
    log = tmp_path_factory.mktemp("framework-server") / "plain.log"
    server = ServeProcess(log, "--model", tiny_scalar, "--kind", "scalar")
    rm = load_reward_model(tiny_scalar, RewardModelOptions(kind="scalar"))
    try:
        with serve_in_thread(rm, policy_template=policies["odd"].folder) as told:
            yield {"plain": server.wait_ready(), "told": told}
    finally:
        server.stop()
        rm.close()
    assert "Traceback" not in server.log_text(), server.log_text()


def test_a_policy_template_without_markers_stops_the_server_at_once(
    tiny_scalar: str, tmp_path: Path, default_model_path: str
) -> None:
    from typer.testing import CliRunner

    from longrm.cli import app

    flat = _policy_folder(
        default_model_path, tmp_path / "flat", "{{ messages[-1]['content'] }}", {}
    )
    for folder, message in ((tmp_path / "missing", "--policy-template"), (flat, "markers")):
        args = ["serve", "--model", tiny_scalar, "--kind", "scalar", "--policy-template"]
        result = CliRunner().invoke(app, [*args, str(folder)])
        assert result.exit_code == 2, result.output
        assert message in result.output.replace("\n", " ")


def _score(url: str, conversation: Messages, answer: str) -> float:
    out = _post(url, "/v1/score", {"messages": conversation, "responses": [answer]})
    assert out.status_code == 200, out.text
    return float(out.json()["scores"][0])


# ------------------------------------------------------------------------------------------------
# OpenRLHF 0.11.2


class FakeVLLM:
    """What `SingleTurnAgentExecutor.execute` needs of vLLM: generate() returning token ids."""

    def __init__(self, token_ids: list[int]) -> None:
        self.token_ids = token_ids
        self.prompts: list[list[int]] = []

    async def generate(self, prompt_token_ids: list[int], params: Any, **_: Any) -> Any:
        self.prompts.append(prompt_token_ids)
        out = SimpleNamespace(token_ids=self.token_ids, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


def _openrlhf_rollout(url: str, policy: Any, conversation: Messages, reply: str) -> dict[str, Any]:
    """Return OpenRLHF's rollout output for one prompt, its reward fetched from `url`."""
    agent = pytest.importorskip(
        "openrlhf.utils.agent",
        reason="pip install --no-deps openrlhf==0.11.2 && pip install aiohttp pylatexenc",
    )
    # OpenRLHF's prompt dataset applies the policy's chat template (--apply_chat_template)
    prompt = policy.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    engine = FakeVLLM(policy(reply, add_special_tokens=False)["input_ids"])
    executor = agent.SingleTurnAgentExecutor(f"{url}/get_reward")
    params = SimpleNamespace(max_tokens=256, logprobs=None)
    output: dict[str, Any] = asyncio.run(
        executor.execute(prompt, "a label", params, 8192, policy, engine)
    )
    assert engine.prompts, "the executor never generated"
    # OpenRLHF turns every extra_logs value into a tensor: numbers only
    assert all(isinstance(v, float) for vs in output["extra_logs"].values() for v in vs)
    return output


@pytest.mark.parametrize("name", ["chatml-no-system", "llama3", "qwen3-thinking"])
def test_openrlhf_client_with_a_foreign_policy_template(
    name: str, urls: dict[str, str], policies: dict[str, Any]
) -> None:
    url = urls["plain"]
    _, _, reply, code = POLICIES[name]
    for conversation, answer in zip(CONVERSATIONS, ANSWERS, strict=True):
        output = _openrlhf_rollout(url, policies[name], conversation, reply.format(answer=answer))
        assert output["reward"] is not None, f"{name}: OpenRLHF got no reward (see its log)"
        assert output["reward"] == pytest.approx([_score(url, conversation, answer)], abs=1e-4)
        assert output["scores"] == output["reward"]
        logs = output["extra_logs"]
        assert logs["split_family"] == [code] and logs["split_at_prompt"] == [1.0]
        assert logs["scored"] == [1.0]
        assert logs["reasoning_removed"] == [float("<think>" in reply)]


def test_a_template_of_no_known_family_needs_policy_template(
    urls: dict[str, str], policies: dict[str, Any]
) -> None:
    policy = policies["odd"]
    conversation, answer = CONVERSATIONS[2], ANSWERS[0]
    reply = POLICIES["odd"][2].format(answer=answer)
    # told the policy's tokenizer, the server reads its markup
    told = _openrlhf_rollout(urls["told"], policy, conversation, reply)
    assert told["reward"] == pytest.approx([_score(urls["told"], conversation, answer)], abs=1e-4)
    assert told["extra_logs"]["split_family"] == [1.0]
    # other families still work on that server
    llama = _openrlhf_rollout(urls["told"], policies["llama3"], conversation, answer + "<|eot_id|>")
    assert llama["reward"] == pytest.approx([_score(urls["told"], conversation, answer)], abs=1e-4)
    # not told, the prompt is plain text (logged as family 0) ...
    plain = _openrlhf_rollout(urls["plain"], policy, conversation, reply)
    assert plain["extra_logs"]["split_family"] == [0.0]
    # ... and a query without its prompt cannot be split: the 422 names the flag
    prompt = policy.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    refused = _post(urls["plain"], "/get_reward", {"query": [prompt + reply]})
    error = _error(refused, 422)
    assert error["param"] == "query[0]" and "--policy-template" in error["message"]
    alone = _post(urls["told"], "/get_reward", {"query": [prompt + reply]}).json()
    assert alone["rewards"] == pytest.approx(told["reward"], abs=1e-4)
    assert alone["splits"][0]["at"] == "reply_marker"


# ------------------------------------------------------------------------------------------------
# slime


@dataclass
class Sample:
    """The fields of slime's `Sample` that `remote_rm` sends (slime/utils/types.py)."""

    prompt: str | list[dict[str, str]]
    response: str
    label: str | None = None


async def slime_remote_rm(rm_url: str, sample: Sample, max_retries: int = 10) -> Any:
    """slime's `remote_rm`: one POST per sample, {prompt, response, label}; aiohttp with a 120 s
    total timeout; errors (4xx included) retried with exponential backoff; the JSON answer is
    returned whole as the sample's reward.
    """
    payload = {"prompt": sample.prompt, "response": sample.response, "label": sample.label}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempt in range(max_retries):
            try:
                async with session.post(rm_url, json=payload) as resp:
                    resp.raise_for_status()
                    return await resp.json()
            except Exception:
                if attempt + 1 >= max_retries:
                    raise
                await asyncio.sleep(min(2**attempt, 30) + random.random())


def _reward_value(reward: Any, reward_key: str | None) -> Any:
    """slime's `Sample.get_reward_value`: the reward, or the value at --reward-key."""
    return reward if not reward_key else reward[reward_key]


def test_slime_remote_rm(urls: dict[str, str], policies: dict[str, Any]) -> None:
    url = urls["plain"]
    policy = policies["llama3"]
    for conversation, answer in zip(CONVERSATIONS, ANSWERS, strict=True):
        expected = _score(url, conversation, answer)
        # --apply-chat-template: the prompt is the policy's rendering; SGLang's text skips
        # special tokens, so the response is the answer as written
        text = policy.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        samples = [
            Sample(text, answer, "two crates"),
            Sample(conversation, answer),  # a dataset of messages, no chat template applied
            Sample(text, f"<think>\nThe cargo is listed.\n</think>\n\n{answer}", "x"),
        ]
        for sample in samples:
            bare = asyncio.run(slime_remote_rm(f"{url}/slime/reward", sample, max_retries=1))
            assert isinstance(bare, float)
            assert _reward_value(bare, None) == pytest.approx(expected, abs=1e-4)
            keyed = asyncio.run(
                slime_remote_rm(f"{url}/slime/reward?object=true", sample, max_retries=1)
            )
            assert _reward_value(keyed, "reward") == pytest.approx(expected, abs=1e-4)
    # a plain-text prompt (no chat template) is one user turn
    plain = Sample("2+2?", " 4")
    got = asyncio.run(slime_remote_rm(f"{url}/slime/reward", plain, max_retries=1))
    assert got == pytest.approx(_score(url, [{"role": "user", "content": "2+2?"}], " 4"), abs=1e-4)
    bad = _post(url, "/slime/reward", {"prompt": [], "response": "a"})
    assert "empty list" in _error(bad, 422)["message"]
