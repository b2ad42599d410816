"""Sequence scorers see exactly the token ids their own chat template produces, and judges that
can think are told whether to.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from longrm.rm.hf_common import chat_template_thinking_support, render_chat
from longrm.rm.load import RewardModelOptions, load_reward_model
from longrm.rm.prefix_cache import common_prefix_length

LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are Qwen, a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA = (  # a BOS in the template, no system role, the assistant is the "model"
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
QWEN3 = (  # the last answer and a non-thinking generation prompt get an empty think block
    "{% for m in messages %}{% if m['role'] == 'assistant' and loop.last %}"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n{{ m['content'] }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
TEMPLATES = {"llama3": LLAMA3, "qwen": QWEN, "gemma": GEMMA, "qwen3": QWEN3}

PROMPT = [
    {"role": "user", "content": "Context: the barge Tilde carried 7 sacks of salt. " * 40},
    {"role": "assistant", "content": "Noted."},
    {"role": "user", "content": "How many sacks did the Tilde carry?\n"},
]
# leading and trailing whitespace that templates keep or trim, and text that tokenizes across
# the boundary with the template's next token
RESPONSES = ["  It carried 7 sacks.\n\n", "Seven sacks of salt", "It carried 9 sacks of flour.  "]


def _with_template(src: str, dst: Path, template: str) -> str:
    """Return a copy of the model folder `src` whose tokenizer has `template`."""
    shutil.copytree(src, dst)
    tokenizer = AutoTokenizer.from_pretrained(src)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(dst)
    return str(dst)


def _template_ids(tokenizer, messages, **kw) -> list[int]:  # type: ignore[no-untyped-def]
    """Return apply_chat_template's ids as an AutoModelForSequenceClassification user gets them."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, **kw)
    return list(out if isinstance(out, list) else out["input_ids"])  # BatchEncoding in 5.x


@pytest.mark.parametrize("style", ["llama3", "qwen", "gemma", "qwen3"])
def test_scalar_scores_the_templates_exact_ids(style: str, tiny_scalar: str, tmp_path: Path):
    path = _with_template(tiny_scalar, tmp_path / style, TEMPLATES[style])
    cached = load_reward_model(path, RewardModelOptions(kind="scalar"))
    plain = load_reward_model(path, RewardModelOptions(kind="scalar", prefix_cache=False))
    tokenizer, model = cached.loaded.tokenizer, cached.loaded.model  # type: ignore[attr-defined]
    want_scores = []
    for response in RESPONSES:
        full = _template_ids(tokenizer, [*PROMPT, {"role": "assistant", "content": response}])
        head, tail = cached._split(PROMPT, response)  # type: ignore[attr-defined]
        assert head + tail == full
        assert len(head) > 400 and tail  # split at the prompt: the cache serves the prompt
        with torch.no_grad():
            want_scores.append(float(model(torch.tensor([full])).logits[0, 0]))
    got = cached.rank(PROMPT, RESPONSES)
    assert got.scores == pytest.approx(want_scores, abs=1e-4)
    assert plain.rank(PROMPT, RESPONSES).scores == pytest.approx(want_scores, abs=1e-4)
    assert cached.runner.tokens_reused > 2 * 400  # type: ignore[attr-defined]


@pytest.mark.parametrize("style", ["llama3", "qwen", "gemma"])
def test_likelihood_scores_what_the_template_puts_after_the_prompt(
    style: str, tiny_causal: str, tmp_path: Path
) -> None:
    path = _with_template(tiny_causal, tmp_path / style, TEMPLATES[style])
    cached = load_reward_model(path, RewardModelOptions(kind="likelihood"))
    plain = load_reward_model(path, RewardModelOptions(kind="likelihood", prefix_cache=False))
    tokenizer, model = cached.loaded.tokenizer, cached.loaded.model  # type: ignore[attr-defined]
    head = _template_ids(tokenizer, PROMPT, add_generation_prompt=True)
    want_scores = []
    for response in RESPONSES:
        full = _template_ids(tokenizer, [*PROMPT, {"role": "assistant", "content": response}])
        # The text extends the generation prompt, but the prompt's last token ("\n") may merge
        # with the response's first: the merged token is scored as the response's.
        k = common_prefix_length(head, full)
        assert len(head) - 1 <= k <= len(head)
        assert cached._split(PROMPT, response) == (full[:k], full[k:])  # type: ignore[attr-defined]
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0, k - 1 : -1]
        logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(full[k:])[:, None])
        want_scores.append(float(logp.mean()))
    assert cached.rank(PROMPT, RESPONSES).scores == pytest.approx(want_scores, abs=1e-4)
    assert plain.rank(PROMPT, RESPONSES).scores == pytest.approx(want_scores, abs=1e-4)


def test_thinking_reaches_templates_that_read_it(tokenizer) -> None:  # type: ignore[no-untyped-def]
    thinker, plain = tokenizer.__class__.from_pretrained(tokenizer.name_or_path), tokenizer
    thinker.chat_template = QWEN3
    assert chat_template_thinking_support(thinker)
    assert not chat_template_thinking_support(plain)
    messages = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "A or B?"}]
    off = render_chat(thinker, messages, True, thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render_chat(thinker, messages, True, thinking=True).endswith("<|im_start|>assistant\n")
    assert render_chat(thinker, messages, True, thinking=None).endswith("<|im_start|>assistant\n")
    assert render_chat(thinker, messages, True) == off  # off unless asked
    # a template that never reads enable_thinking renders the same either way
    assert render_chat(plain, messages, True, True) == render_chat(plain, messages, True, False)


@pytest.mark.parametrize("thinking", [False, True])
def test_backends_pass_thinking(thinking: bool, tiny_causal: str, tmp_path: Path) -> None:
    path = _with_template(tiny_causal, tmp_path / "qwen3", QWEN3)
    options = RewardModelOptions(kind="judge", verdict="logprob", thinking=thinking)
    judge = load_reward_model(path, options)
    messages = judge.prompts.judge_messages(PROMPT[:1], ["A", "B"])  # type: ignore[attr-defined]
    text = judge.tokenizer.decode(judge._prompt_ids(messages))  # type: ignore[attr-defined]
    assert text.endswith("<think>\n\n</think>\n\n") is not thinking
    assert sum(judge.rank(PROMPT[:1], ["A", "B"]).scores) == pytest.approx(1.0, abs=1e-5)
    options = RewardModelOptions(kind="likelihood", thinking=thinking)
    likelihood = load_reward_model(path, options)
    _, tail = likelihood._split(PROMPT, "Seven.")  # type: ignore[attr-defined]
    # not thinking, the empty think block is the prompt's; thinking, the answer's own
    assert ("<think>" in likelihood.tokenizer.decode(tail)) is thinking  # type: ignore[attr-defined]
