"""Token ids for training, split exactly where evaluation splits them.

A judge is evaluated on the chat template's prompt ids (with the generation prompt) followed by
its judgment; a scalar RM on the template's ids of (prompt, response). Training on any other
split would teach the model a text it is never shown, so both come from the same template call.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from longrm.items import Messages
from longrm.rm.hf_common import chat_ids, encode
from longrm.rm.prefix_cache import common_prefix_length


@dataclass(frozen=True)
class PromptResponses:
    """One prompt's ids and the ids of each response that follows it (closing tokens included).

    `scored` marks, per response token, whether a loss reads its log-probability (None: every
    token); Stage II's `--score_tokens verdict` marks the verdict's tokens only.
    """

    prompt: list[int]
    responses: list[list[int]]
    scored: list[list[bool]] | None = None

    def __post_init__(self) -> None:
        if self.scored is not None and [len(s) for s in self.scored] != [
            len(r) for r in self.responses
        ]:
            raise ValueError("`scored` needs one flag per response token")

    @property
    def longest(self) -> int:
        """Return the tokens of the prompt with its longest response."""
        return len(self.prompt) + max(len(r) for r in self.responses)


def response_ids(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, response: str, head: list[int]
) -> list[int]:
    """Return the ids the template puts after `head` (the prompt's ids with the generation
    prompt) when `response` is the assistant's turn: the response and the turn's closing tokens.

    Templates that rewrite earlier turns once an answer follows (dropping a thinking block, say)
    do not extend `head`; those get the response's own ids and the end-of-sequence token.
    """
    full = chat_ids(tokenizer, [*messages, {"role": "assistant", "content": response}], False)
    k = common_prefix_length(head, full)
    if k == len(head) and len(full) > k:
        return full[k:]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return encode(tokenizer, response) + eos


def tokenize_judgments(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, responses: list[str]
) -> PromptResponses:
    """Return the prompt's ids (generation prompt included) and each response's ids after it."""
    head = chat_ids(tokenizer, messages, add_generation_prompt=True)
    return PromptResponses(head, [response_ids(tokenizer, messages, r, head) for r in responses])


def scalar_ids(tokenizer: PreTrainedTokenizerBase, messages: Messages, response: str) -> list[int]:
    """Return the ids a scalar RM scores for (task prompt, response): the template's full chat,
    exactly as `longrm eval --kind scalar` builds them (the score is read at the last token).
    """
    return chat_ids(tokenizer, [*messages, {"role": "assistant", "content": response}], False)
