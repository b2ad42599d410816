"""Templated text back to chat turns: RL frameworks send prompt + response as one string.

OpenRLHF and verl render the chat template themselves and send text. The reward model interface
takes chat messages, so the text is parsed back with markers learned from the model's own chat
template (each role's header and footer, read off a rendering of placeholder turns), and the
parse is accepted only when rendering the turns again gives the text back exactly. A prompt with
no template markup at all is a plain user turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from longrm.items import Messages

# Private-use characters: no template or tokenizer gives them a meaning.
_S = ("\ue000", "\ue001", "\ue002", "\ue003")


class ChatTextError(ValueError):
    """A text that cannot be split into prompt turns and a response."""


@dataclass(frozen=True)
class _Markers:
    preamble: str
    header: dict[str, str]
    footer: dict[str, str]
    generation: str  # what add_generation_prompt appends: the assistant's header


def _learn(tokenizer: PreTrainedTokenizerBase) -> _Markers | None:
    """Return the template's role markers, or None for templates that do not fit the
    header + content + footer pattern (the caller then accepts plain text only).
    """

    def render(messages: Messages, generation: bool) -> str:
        return str(
            tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation
            )
        )

    turns = [
        {"role": "system", "content": _S[0]},
        {"role": "user", "content": _S[1]},
        {"role": "assistant", "content": _S[2]},
        {"role": "user", "content": _S[3]},
    ]
    try:
        full = render(turns, True)
        user_end = render(turns[:2], False)
        assistant_end = render(turns[:3], False)
    except Exception:  # a template that rejects this conversation (no system role...)
        return None
    at = [full.find(s) for s in _S]
    if min(at) < 0 or at != sorted(at):
        return None
    user_footer = user_end[user_end.find(_S[1]) + 1 :]
    assistant_footer = assistant_end[assistant_end.find(_S[2]) + 1 :]
    post = full[at[3] + 1 :]
    between_au = full[at[2] + 1 : at[3]]
    between_su = full[at[0] + 1 : at[1]]
    if not (post.startswith(user_footer) and between_au.startswith(assistant_footer)):
        return None
    generation = post[len(user_footer) :]
    user_header = between_au[len(assistant_footer) :]
    if not between_su.endswith(user_header) or not generation:
        return None
    system_footer = between_su[: len(between_su) - len(user_header)]
    pre = full[: at[0]]
    system_header = user_header.replace("user", "system")
    if not pre.endswith(system_header):
        system_header = pre
    return _Markers(
        preamble=pre[: len(pre) - len(system_header)],
        header={"system": system_header, "user": user_header, "assistant": generation},
        footer={"system": system_footer, "user": user_footer, "assistant": assistant_footer},
        generation=generation,
    )


class ChatText:
    """Splits templated texts with one tokenizer's chat template (no template: plain text only)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self.tokenizer = tokenizer
        has_template = tokenizer is not None and bool(tokenizer.chat_template)
        self.markers = _learn(tokenizer) if has_template and tokenizer is not None else None
        ends = [getattr(tokenizer, "eos_token", None), getattr(tokenizer, "pad_token", None)]
        self._ends = [e for e in ends if e]

    def _render(self, messages: Messages) -> str:
        assert self.tokenizer is not None
        return str(
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )

    def _parse(self, text: str) -> Messages | None:
        """Return the turns whose rendering (with the generation prompt) is `text`, else None."""
        m = self.markers
        if m is None:
            return None
        i = len(m.preamble) if text.startswith(m.preamble) else 0
        messages: Messages = []
        while i < len(text):
            if text[i:] == m.generation and messages:
                break
            # the longest header that matches (assistant and user headers may share a prefix)
            roles = sorted(m.header, key=lambda r: -len(m.header[r]))
            role = next((r for r in roles if text.startswith(m.header[r], i)), None)
            if role is None:
                return None
            start = i + len(m.header[role])
            end = text.find(m.footer[role], start) if m.footer[role] else -1
            if end < 0:
                return None
            messages.append({"role": role, "content": text[start:end]})
            i = end + len(m.footer[role])
        else:
            return None
        try:
            rendered = self._render(messages)
        except Exception:
            return None
        if rendered == text or (not text.startswith(m.preamble) and rendered == m.preamble + text):
            return messages
        return None

    def _looks_templated(self, text: str) -> bool:
        m = self.markers
        return m is not None and any(h.strip() and h.strip() in text for h in m.header.values())

    def prompt_messages(self, prompt: str) -> Messages:
        """Return the turns of a templated prompt, or one user turn for plain text."""
        parsed = self._parse(prompt)
        bos = getattr(self.tokenizer, "bos_token", None)
        if parsed is None and bos and not prompt.startswith(bos):
            parsed = self._parse(bos + prompt)  # verl strips a leading BOS token's text
        if parsed is not None:
            return parsed
        if self._looks_templated(prompt):
            raise ChatTextError(
                "the text carries chat-template markup that the model's template does not "
                "render back exactly; send the turns to /v1/score as 'messages' instead"
            )
        return [{"role": "user", "content": prompt}]

    def response_text(self, text: str) -> str:
        """Return a response without the assistant's end-of-turn markup and end tokens."""
        footer = self.markers.footer["assistant"] if self.markers else ""
        changed = True
        while changed:
            changed = False
            for end in (footer, footer.strip(), *self._ends):
                if end and text.endswith(end):
                    text, changed = text[: len(text) - len(end)], True
        return text

    def split(self, query: str, prompt: str | None) -> tuple[Messages, str]:
        """Return (prompt turns, response) of a query: at the prompt's end when it is given and
        the query starts with it, else after the last assistant header of the chat template.
        """
        if prompt is not None and query.startswith(prompt):
            return self.prompt_messages(prompt), self.response_text(query[len(prompt) :])
        m = self.markers
        cut = query.rfind(m.generation) if m is not None else -1
        if m is None or cut < 0:
            where = "does not start with its prompt" if prompt is not None else "has no prompt"
            raise ChatTextError(
                f"the query {where} and the model has no chat template to find where the "
                "response starts: send 'prompts' with the exact prompt text of each query"
            )
        head = query[: cut + len(m.generation)]
        return self.prompt_messages(head), self.response_text(query[cut + len(m.generation) :])
