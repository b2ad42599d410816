"""Chat-template families: the markup that opens and closes each role's turn, as data.

A policy's rendered prompt (or prompt + response) is read back into chat turns with the markers of
its template family. `FAMILIES` is the table of the common ones, tried in order when the policy's
tokenizer is not given; `learn_family` reads the same markers off any tokenizer's chat template
(`--policy-template`, and the reward model's own template) by rendering placeholder turns.

A marker table row says, per role, the text that opens the turn (`header`) and the text that
closes it (`footer`). An empty header is a turn without one: a bare system prompt before the first
header (DeepSeek), or the assistant's reply right after the user's closing marker (Mistral's
`[/INST]`). An empty footer means the turn runs to the next header (DeepSeek's user turns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longrm.items import Messages

ROLES = ("system", "user", "assistant")

#: reasoning blocks a response may open with (Qwen3, DeepSeek-R1, and their distillations):
#: the reward is for the answer after the block, as these templates drop it from the history
THINK = (("<think>", "</think>"),)


@dataclass(frozen=True)
class Family:
    """One chat-template family's markers; `code` is its number in `extra_logs.split_family`."""

    name: str
    code: int
    header: dict[str, str]
    footer: dict[str, str]
    bos: tuple[str, ...] = ()  # texts a rendering may start with
    ends: tuple[str, ...] = ()  # end-of-turn and end-of-text markup a response may end with
    trim: bool = False  # the template strips whitespace around each turn's content
    generation: str | None = None  # what the generation prompt adds (default: the assistant header)
    _headers: list[tuple[str, str]] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        # the longest header first: two roles' headers may share a prefix
        pairs = sorted(((r, h) for r, h in self.header.items() if h), key=lambda p: -len(p[1]))
        self._headers.extend(pairs)

    @property
    def reply_marker(self) -> str:
        """Return the text after which the assistant's reply starts."""
        generation = (
            self.header.get("assistant", "") if self.generation is None else self.generation
        )
        return generation or self.footer["user"].rstrip()

    @property
    def reply_marker_is_header(self) -> bool:
        """Return whether the generation prompt writes a header (else the reply follows the
        user's closing marker directly)."""
        return self.reply_marker != self.footer["user"].rstrip()

    def response_ends(self) -> tuple[str, ...]:
        """Return the markup that may close a response (its footer included)."""
        footer = self.footer.get("assistant", "")
        return tuple(e for e in (*self.ends, footer, footer.strip()) if e)

    def parse(self, text: str) -> tuple[Messages, str | None] | None:
        """Return (turns, open reply) of a rendering, or None when it does not fit the markers.

        The open reply is the text of a last assistant turn that was opened and not closed
        (the generation prompt and what follows it), None when every turn is closed.
        """
        i = 0
        advanced = True
        while advanced:  # a BOS token, possibly written twice
            advanced = False
            for bos in self.bos:
                if text.startswith(bos, i):
                    i += len(bos)
                    advanced = True
        turns: Messages = []
        while i < len(text):
            role = next((r for r, h in self._headers if text.startswith(h, i)), None)
            if role is not None:
                start = i + len(self.header[role])
            elif not turns and self.header.get("system") == "":
                role, start = "system", i
            elif turns and turns[-1]["role"] == "user" and self.header.get("assistant") == "":
                role, start = "assistant", i
            else:
                return None
            footer = self.footer.get(role, "")
            if footer.rstrip() or footer:
                closed = self._close(text, start, role)
                if closed is None:
                    if role == "assistant":
                        return turns, text[start:]
                    return None
                end, after = closed
            else:
                found = [p for p in (text.find(h, start) for _, h in self._headers) if p >= 0]
                end = min(found, default=len(text))
                if not found and role == "assistant":
                    return turns, text[start:]
                after = end
            content = text[start:end]
            turns.append({"role": role, "content": content.strip() if self.trim else content})
            i = after
        if turns and turns[-1]["role"] == "user" and not self.reply_marker_is_header:
            return turns, ""  # Mistral: the reply follows the user's closing [/INST]
        return turns, None

    def _close(self, text: str, start: int, role: str) -> tuple[int, int] | None:
        """Return (end of content, start of what follows) of the turn's footer: the first one
        followed by the next turn's header or the end of the text (a footer such as a blank line
        may occur inside the content too); None when there is none.
        """
        footer = self.footer[role]
        core = footer.rstrip() or footer
        rest = footer[len(core) :]
        free_reply = role == "user" and self.header.get("assistant") == ""
        end = text.find(core, start)
        while end >= 0:
            after = end + len(core)
            if rest and text.startswith(rest, after):
                after += len(rest)
            if (
                after >= len(text)
                or free_reply
                or any(text.startswith(h, after) for _, h in self._headers)
            ):
                return end, after
            end = text.find(core, end + 1)
        return None

    def parse_prompt(self, text: str) -> tuple[Messages, str] | None:
        """Return (turns, open reply) of a prompt rendered with the generation prompt, else None."""
        parsed = self.parse(text)
        if parsed is None:
            return None
        turns, reply = parsed
        if reply is None or not turns or turns[-1]["role"] == "assistant":
            return None
        return turns, reply

    def split_query(self, text: str) -> tuple[Messages, str] | None:
        """Return (prompt turns, response) of prompt + response text, cut after the last reply
        marker; None when the text has no such marker or its prompt does not fit the markers.
        """
        marker = self.reply_marker
        cut = text.rfind(marker) if marker else -1
        if cut < 0:
            return None
        head = text[: cut + len(marker)]
        parsed = self.parse_prompt(head)
        if parsed is None:
            return None
        turns, reply = parsed
        return turns, reply + text[cut + len(marker) :]


def _roles(header: str, footer: str, roles: tuple[str, ...] = ROLES) -> dict[str, Any]:
    """Return header and footer maps for a template that writes the role name into its header."""
    return {
        "header": {r: header.format(role=r) for r in roles},
        "footer": dict.fromkeys(roles, footer),
    }


#: codes 0-2 are not table rows: 0 plain text (no markup), 1 --policy-template, 2 the reward
#: model's own template
PLAIN_CODE, POLICY_CODE, REWARD_MODEL_CODE = 0, 1, 2

#: the common families, tried in this order (after --policy-template and the reward model's own)
FAMILIES: tuple[Family, ...] = (
    # ChatML: Qwen2.5, Qwen3 (with <think> blocks), SmolLM2, Hermes, Yi...; with or without a
    # system turn
    Family(
        "chatml",
        3,
        **_roles("<|im_start|>{role}\n", "<|im_end|>\n"),
        ends=("<|im_end|>", "<|endoftext|>"),
    ),
    # Llama 3, 3.1, 3.2, 3.3
    Family(
        "llama3",
        4,
        **_roles("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>"),
        bos=("<|begin_of_text|>",),
        ends=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
        trim=True,
    ),
    # Gemma 1-3: the assistant is "model"; a system prompt is folded into the first user turn
    Family(
        "gemma",
        5,
        header={"user": "<start_of_turn>user\n", "assistant": "<start_of_turn>model\n"},
        footer={"user": "<end_of_turn>\n", "assistant": "<end_of_turn>\n"},
        bos=("<bos>",),
        ends=("<end_of_turn>", "<eos>"),
        trim=True,
    ),
    # Mistral / Mixtral [INST] (v1-v7), Llama 2; the reply follows [/INST] without a header
    Family(
        "mistral",
        6,
        header={"system": "[SYSTEM_PROMPT]", "user": "[INST]", "assistant": ""},
        footer={"system": "[/SYSTEM_PROMPT]", "user": "[/INST]", "assistant": "</s>"},
        bos=("<s>",),
        ends=("</s>",),
        trim=True,
    ),
    # Phi-3, Phi-3.5, Phi-4-mini
    Family(
        "phi3",
        7,
        **_roles("<|{role}|>\n", "<|end|>\n"),
        bos=("<s>",),
        ends=("<|end|>", "<|endoftext|>"),
    ),
    # Phi-4
    Family(
        "phi4",
        8,
        **_roles("<|im_start|>{role}<|im_sep|>", "<|im_end|>"),
        ends=("<|im_end|>", "<|endoftext|>"),
    ),
    # DeepSeek V2.5, V3, R1 (whose generation prompt opens a <think> block): a bare system prompt,
    # user turns closed by the assistant's header
    Family(
        "deepseek",
        9,
        header={"system": "", "user": "<｜User｜>", "assistant": "<｜Assistant｜>"},
        footer={"system": "", "user": "", "assistant": "<｜end▁of▁sentence｜>"},
        bos=("<｜begin▁of▁sentence｜>",),
        ends=("<｜end▁of▁sentence｜>",),
    ),
)

# Private-use characters: no template or tokenizer gives them a meaning.
_S = ("\ue000", "\ue001", "\ue002", "\ue003")


def learn_family(tokenizer: Any, name: str, code: int) -> Family | None:
    """Return the markers of a tokenizer's chat template, read off renderings of placeholder
    turns; None for a template without the header + content + footer shape.
    """
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None

    def render(turns: list[int], generation: bool) -> str | None:
        roles = {0: "system", 1: "user", 2: "assistant", 3: "user"}
        messages = [{"role": roles[i], "content": _S[i]} for i in turns]
        try:
            out = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation
            )
        except Exception:  # a template that rejects this conversation (no system role...)
            return None
        return out if isinstance(out, str) else None

    full = render([1, 2, 3], True)
    user_only = render([1], False)
    with_reply = render([1, 2], False)
    if full is None or user_only is None or with_reply is None:
        return None
    at = [full.find(s) for s in _S[1:]]
    if min(at) < 0 or at != sorted(at):
        return None
    user_footer = user_only[user_only.find(_S[1]) + 1 :]
    assistant_footer = with_reply[with_reply.find(_S[2]) + 1 :]
    between_ua, between_au = full[at[0] + 1 : at[1]], full[at[1] + 1 : at[2]]
    post = full[at[2] + 1 :]
    if not (
        between_ua.startswith(user_footer)
        and between_au.startswith(assistant_footer)
        and post.startswith(user_footer)
    ):
        return None
    user_header = between_au[len(assistant_footer) :]
    pre = full[: at[0]]
    if not user_header or not pre.endswith(user_header):
        return None
    preamble = pre[: len(pre) - len(user_header)]
    assistant_header = between_ua[len(user_footer) :]
    generation = post[len(user_footer) :]
    # the generation prompt may open more than the header (DeepSeek-R1: "<think>\n"), or less
    # (Mistral writes a space before a reply in the history, none after the last [/INST])
    fits = generation.startswith(assistant_header) or assistant_header.startswith(generation)
    if not fits or not (generation or user_footer.strip()):
        return None
    header = {"user": user_header, "assistant": assistant_header}
    footer = {"user": user_footer, "assistant": assistant_footer}
    system = _learn_system(render([0, 1, 2, 3], True), preamble, user_header)
    if system is not None:
        header["system"], footer["system"] = system
    ends = tuple(
        t
        for t in (getattr(tokenizer, "eos_token", None), getattr(tokenizer, "pad_token", None))
        if isinstance(t, str) and t
    )
    # what a rendering starts with; verl sends it without the BOS token's text
    bos = getattr(tokenizer, "bos_token", None)
    bare = preamble.removeprefix(bos) if isinstance(bos, str) and bos else preamble
    starts = tuple(dict.fromkeys(s for s in (preamble, bare) if s))
    return Family(name, code, header, footer, bos=starts, ends=ends, generation=generation)


def _learn_system(full: str | None, preamble: str, user_header: str) -> tuple[str, str] | None:
    """Return the system turn's (header, footer), or None when the template has no system
    turn of its own (it rejects one, or folds it into a user turn).
    """
    if full is None:
        return None
    at = [full.find(s) for s in _S]
    if min(at) < 0 or at != sorted(at):
        return None
    between = full[at[0] + 1 : at[1]]
    if not between.endswith(user_header):
        return None
    footer = between[: len(between) - len(user_header)]
    pre = full[: at[0]]
    if pre == preamble:
        return "", footer  # a bare system prompt after the preamble
    guess = user_header.replace("user", "system")
    if guess != user_header and guess in pre:
        return guess, footer
    if pre.startswith(preamble):
        return pre[len(preamble) :], footer
    return None
