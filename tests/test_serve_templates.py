"""Reading templated text back into chat turns: every family of the marker table, learned markers.

Each family's template is written here in Jinja, in the shape its models' tokenizers render
(not copied from them); a conversation rendered with it must come back as the same turns and
response, cut at the given prompt and, without one, after the last reply marker.
"""

from __future__ import annotations

from typing import Any

import jinja2
import pytest

from longrm.items import Messages
from longrm.serve.chat_text import ChatText, ChatTextError
from longrm.serve.families import FAMILIES, learn_family

TEMPLATES: dict[str, dict[str, Any]] = {
    "chatml": {
        "template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] "
        "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}",
        "reply": "{answer}<|im_end|>",
    },
    "qwen3": {  # ChatML; a reply opens with a reasoning block
        "template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] "
        "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}",
        "reply": "<think>\nLet me look at the context first.\n</think>\n\n{answer}<|im_end|>",
        "family": "chatml",
    },
    "qwen3-no-thinking": {  # enable_thinking=False: the prompt holds an empty reasoning block
        "template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] "
        "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n<think>\n\n</think>\n\n' }}{% endif %}",
        "reply": "{answer}<|im_end|>",
        "family": "chatml",
    },
    "llama3": {
        "template": "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] "
        "+ '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{% endif %}",
        "bos": "<|begin_of_text|>",
        "reply": "{answer}<|eot_id|>",
    },
    "gemma": {  # the system prompt goes into the first user turn
        "template": "{{ bos_token }}{% set ns = namespace(first='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.first = m['content'] + '\n\n' %}{% else %}"
        "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' "
        "+ ns.first + m['content'] | trim + '<end_of_turn>\n' }}{% set ns.first = '' %}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}"
        "{% endif %}",
        "bos": "<bos>",
        "reply": "{answer}<end_of_turn>",
        "folds_system": True,
    },
    "mistral": {
        "template": "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ '[SYSTEM_PROMPT]' + m['content'] + '[/SYSTEM_PROMPT]' }}{% elif m['role'] == 'user' %}"
        "{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}"
        "{% endif %}{% endfor %}",
        "bos": "<s>",
        "eos": "</s>",
        "reply": " {answer}</s>",
    },
    "phi3": {
        "template": "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] "
        "+ '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}"
        "{% endif %}",
        "reply": "{answer}<|end|>",
    },
    "phi4": {
        "template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '<|im_sep|>' "
        "+ m['content'] + '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}",
        "reply": "{answer}<|im_end|>",
    },
    "deepseek": {  # R1: the generation prompt opens the reasoning block
        "template": "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ m['content'] }}{% elif m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
        "{% else %}{{ '<｜Assistant｜>' + m['content'] + '<｜end▁of▁sentence｜>' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\n' }}{% endif %}",
        "bos": "<｜begin▁of▁sentence｜>",
        "reply": "The question asks for the cargo.\n</think>\n\n{answer}<｜end▁of▁sentence｜>",
    },
}

CONTEXT = "The ferry Orla returned at dusk with two crates of lamp oil."
CONVERSATIONS: list[Messages] = [
    [{"role": "user", "content": f"{CONTEXT}\nWhat did the ferry carry?"}],
    [
        {"role": "system", "content": "Answer from the context."},
        {"role": "user", "content": f"{CONTEXT}\nWhat did the ferry carry?"},
    ],
    [
        {"role": "system", "content": "Answer from the context."},
        {"role": "user", "content": f"{CONTEXT}\nWhen did it return?"},
        {"role": "assistant", "content": "At dusk."},
        {"role": "user", "content": "And what did it carry?"},
    ],
]
ANSWER = "Two crates of lamp oil."


class JinjaTokenizer:
    """Just enough of a tokenizer for `learn_family`: a chat template and special tokens."""

    def __init__(self, template: str, bos: str = "", eos: str = "") -> None:
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = lambda message: (_ for _ in ()).throw(ValueError(message))
        self.chat_template = template
        self._template = env.from_string(template)
        self.bos_token, self.eos_token, self.pad_token = bos, eos, None

    def apply_chat_template(
        self, messages: Messages, tokenize: bool = False, add_generation_prompt: bool = False
    ) -> str:
        assert not tokenize
        return self._template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )


def _tokenizer(name: str) -> JinjaTokenizer:
    spec = TEMPLATES[name]
    return JinjaTokenizer(spec["template"], spec.get("bos", ""), spec.get("eos", ""))


def _expected_turns(name: str, conversation: Messages) -> Messages:
    if not TEMPLATES[name].get("folds_system") or conversation[0]["role"] != "system":
        return conversation
    first = conversation[1]
    folded = {"role": "user", "content": conversation[0]["content"] + "\n\n" + first["content"]}
    return [folded, *conversation[2:]]


def _cases() -> list[tuple[str, int]]:
    return [(name, i) for name in TEMPLATES for i in range(len(CONVERSATIONS))]


def test_the_table_covers_the_families_once() -> None:
    names = [f.name for f in FAMILIES]
    codes = [f.code for f in FAMILIES]
    assert len(set(names)) == len(names) and len(set(codes)) == len(codes)
    assert min(codes) == 3  # 0: plain text, 1: --policy-template, 2: the reward model's own
    assert {TEMPLATES[n].get("family", n) for n in TEMPLATES} == set(names)


@pytest.mark.parametrize(("name", "conversation"), _cases())
def test_every_family_is_recognised_without_its_tokenizer(name: str, conversation: int) -> None:
    messages = CONVERSATIONS[conversation]
    prompt = _tokenizer(name).apply_chat_template(messages, add_generation_prompt=True)
    query = prompt + TEMPLATES[name]["reply"].format(answer=ANSWER)
    reader = ChatText(None)  # no reward-model template: the table alone
    family = TEMPLATES[name].get("family", name)
    for given in (prompt, None):
        split = reader.split(query, given)
        assert split.prompt == _expected_turns(name, messages), (name, given is not None)
        assert split.response == ANSWER
        assert split.template == family and split.at_prompt == (given is not None)
        assert split.reasoning_removed == ("</think>" in query)


@pytest.mark.parametrize(("name", "conversation"), _cases())
def test_learned_markers_read_their_own_renderings(name: str, conversation: int) -> None:
    tokenizer = _tokenizer(name)
    learned = learn_family(tokenizer, "policy", 1)
    assert learned is not None, name
    messages = CONVERSATIONS[conversation]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    query = prompt + TEMPLATES[name]["reply"].format(answer=ANSWER)
    reader = ChatText(None, policy_tokenizer=tokenizer)
    for given in (prompt, None):
        split = reader.split(query, given)
        assert split.template == "policy" and split.code == 1
        turns = [dict(t, content=t["content"].strip()) for t in split.prompt]
        assert turns == _expected_turns(name, messages)
        assert split.response.strip() == ANSWER


def test_a_policy_template_outside_the_table_needs_the_flag() -> None:
    odd = JinjaTokenizer(
        "{% for m in messages %}{{ '### ' + m['role'] + ':\n' + m['content'] + '\n\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '### assistant:\n' }}{% endif %}"
    )
    messages = [dict(m) for m in CONVERSATIONS[2]]
    messages[1]["content"] = CONTEXT + "\n\n" + messages[1]["content"]  # its footer, inside
    prompt = odd.apply_chat_template(messages, add_generation_prompt=True)
    query = prompt + ANSWER + "\n\n"
    with pytest.raises(ChatTextError, match="--policy-template"):
        ChatText(None).split(query)
    assert ChatText(None).split(query, prompt).template == "plain"
    for given in (prompt, None):
        split = ChatText(None, policy_tokenizer=odd).split(query, given)
        assert split.prompt == messages and split.response == ANSWER and split.template == "policy"


def test_plain_prompts_and_unsplittable_queries() -> None:
    reader = ChatText(None)
    split = reader.split("2+2? 4<|im_end|>", "2+2? ")
    assert split.prompt == [{"role": "user", "content": "2+2? "}]
    assert (split.response, split.template, split.code) == ("4", "plain", 0)
    with pytest.raises(ChatTextError, match="--policy-template"):
        reader.split("2+2? 4")
    # a prompt the query does not start with: the reply marker still splits it
    query = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>"
    split = reader.split(query, "<|im_start|>user\nsomething else")
    assert split.prompt == [{"role": "user", "content": "Q"}] and not split.at_prompt


def test_a_reply_cut_off_while_reasoning_has_no_answer() -> None:
    prompt = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    split = ChatText(None).split(prompt + "<think>\nStill thinking about", prompt)
    assert split.response == "" and split.reasoning_removed
