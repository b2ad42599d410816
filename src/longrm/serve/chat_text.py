"""Templated text back to chat turns: RL frameworks send prompt + response as one string.

OpenRLHF, slime and verl render a chat template themselves and send text, and the policy's
template is almost never the reward model's. The reward-model interface takes chat messages, so
the text is read back into turns with the markers of the template that rendered it, tried in
order: the policy's (`--policy-template`), the reward model's own, then the common families of
`families.FAMILIES`. The model then renders the turns again with its own template.

With the prompt text given, the response is the text after it, less end-of-turn markup and a
leading reasoning block; without it, the response starts after the last reply marker of the
first family whose markers read the text before it. A prompt with no known markup is one user
turn. Only a query without a prompt and without any known reply marker cannot be split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from longrm.items import Messages
from longrm.serve.families import (
    FAMILIES,
    PLAIN_CODE,
    POLICY_CODE,
    REWARD_MODEL_CODE,
    THINK,
    Family,
    learn_family,
)


class ChatTextError(ValueError):
    """A text that cannot be split into prompt turns and a response."""


@dataclass(frozen=True)
class Split:
    """A query read back into prompt turns and a response, and how it was read."""

    prompt: Messages
    response: str
    template: str  # the family whose markers read it ("plain": none, one user turn)
    code: int  # the family's number (families.py), for numeric logs
    at_prompt: bool  # cut at the given prompt text (else after the last reply marker)
    reasoning_removed: bool  # a leading <think> block was taken out of the response

    def info(self) -> dict[str, Any]:
        """Return how the query was split, for a response body."""
        return {
            "template": self.template,
            "at": "prompt" if self.at_prompt else "reply_marker",
            "turns": len(self.prompt),
            "reasoning_removed": self.reasoning_removed,
        }


class ChatText:
    """Splits templated texts into chat turns and a response (see the module docstring)."""

    def __init__(self, tokenizer: Any | None, policy_tokenizer: Any | None = None) -> None:
        self.policy = learn_family(policy_tokenizer, "policy", POLICY_CODE)
        own = learn_family(tokenizer, "reward_model", REWARD_MODEL_CODE)
        learned = [f for f in (self.policy, own) if f is not None]
        self.families: list[Family] = [*learned, *FAMILIES]
        bos = getattr(tokenizer, "bos_token", None) if tokenizer is not None else None
        self._bos = bos if isinstance(bos, str) else ""
        ends = {e for f in self.families for e in f.response_ends()}
        for tok in (tokenizer, policy_tokenizer):
            for name in ("eos_token", "pad_token"):
                value = getattr(tok, name, None) if tok is not None else None
                if isinstance(value, str) and value:
                    ends.add(value)
        self._ends = sorted(ends, key=len, reverse=True)  # the longest first: "<|im_end|>\n"

    def tried(self) -> str:
        """Return the names of the templates tried, in order."""
        return ", ".join(f.name for f in self.families)

    def response(self, text: str) -> str:
        """Return a response without end-of-turn markup and a leading reasoning block."""
        return self._response(text, None)[0]

    def _response(self, text: str, family: Family | None) -> tuple[str, bool]:
        """Return the response without end-of-turn markup and a leading reasoning block."""
        changed = True
        while changed:
            changed = False
            for end in self._ends:
                if text.endswith(end):
                    text, changed = text[: len(text) - len(end)], True
        removed = False
        for opening, closing in THINK:
            if closing in text:
                text, removed = text[text.rfind(closing) + len(closing) :].lstrip(), True
            elif text.lstrip().startswith(opening):  # cut off while reasoning: no answer yet
                text, removed = "", True
        if family is not None and family.trim:
            text = text.strip()
        return text, removed

    def split(self, query: str, prompt: str | None = None) -> Split:
        """Return the prompt turns and the response of prompt + response text.

        `prompt`, when given and a prefix of `query`, is where the response starts; otherwise the
        response starts after the last reply marker of a known template.
        """
        if prompt is not None and query.startswith(prompt):
            for family in self.families:
                parsed = family.parse_prompt(prompt)
                if parsed is not None:
                    turns, reply = parsed
                    response, removed = self._response(reply + query[len(prompt) :], family)
                    return Split(turns, response, family.name, family.code, True, removed)
            response, removed = self._response(query[len(prompt) :], None)
            turns = [{"role": "user", "content": prompt}]
            return Split(turns, response, "plain", PLAIN_CODE, True, removed)
        texts = [query]
        if self._bos and not query.startswith(self._bos):
            texts.append(self._bos + query)  # verl strips the reward model's BOS token's text
        for text in texts:
            for family in self.families:
                cut = family.split_query(text)
                if cut is not None:
                    turns, rest = cut
                    response, removed = self._response(rest, family)
                    return Split(turns, response, family.name, family.code, False, removed)
        where = "does not start with its prompt" if prompt is not None else "comes without a prompt"
        raise ChatTextError(
            f"the query {where}, and no known chat template ({self.tried()}) marks where its "
            "response starts: start the server with --policy-template MODEL_OR_FOLDER (the "
            "policy's tokenizer, whose chat template rendered the query), or send 'prompts' "
            "with the exact prompt text of each query"
        )
