"""A reward model behind any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp, hosted).

The official `openai` client does the HTTP, the timeouts and the retries with backoff; this module
only builds judge prompts, reads verdicts back, and turns failures that survive the retries into
per-item error records, so that one bad item or a flaky server never crashes a long evaluation.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import openai

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict, ranking_from_scores
from longrm.rm.prompts import PromptSet, example_verdict, letters
from longrm.rm.verdicts import parse_ranking, parse_score

DEFAULT_BASE_URL = "https://api.openai.com/v1"
VerdictMode = Literal["generate", "logprob"]

_SPEC_PREFIX = "openai:"
# The first letter of a verdict: the character right after "[[" (spaces allowed).
_VERDICT_START = re.compile(r"\[\[\s*([A-Z])")
# A token that starts a verdict with one letter: optional brackets/space, the letter, then only
# what may follow it inside a verdict (">B", "]]"), so that "Answer" is not an "A".
_LETTER_TOKEN = re.compile(r"^[\s\[]*([A-Z])(?:\s*>\s*[A-Z]?)*[\s\]>]*$")


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """Return (model, base_url) of `openai:NAME[@URL]`; without a URL, $OPENAI_BASE_URL or OpenAI's.

    The URL follows the last '@', so a model name may itself contain '@' when a URL is given.
    """
    usage = "expected 'openai:NAME' or 'openai:NAME@http://host:port/v1'"
    if not spec.startswith(_SPEC_PREFIX):
        raise ValueError(f"not an OpenAI-compatible model spec: {spec!r}; {usage}")
    rest = spec[len(_SPEC_PREFIX) :]
    model, sep, url = rest.rpartition("@")
    if not sep:
        model, url = rest, ""
    model, url = model.strip(), url.strip().rstrip("/")
    if not model:
        raise ValueError(f"{spec!r}: the model name is empty; {usage}")
    if sep:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"{spec!r}: {url!r} is not a server URL (http:// or https:// with a host); {usage}"
            )
        return model, url
    return model, os.environ.get("OPENAI_BASE_URL", "").strip().rstrip("/") or DEFAULT_BASE_URL


class EmptyReplyError(openai.OpenAIError):
    """The server answered without any choice (a malformed reply, recorded like a failed call)."""


def _error_text(err: BaseException) -> str:
    """Return 'ExceptionClass: message', the form error records carry."""
    return f"{type(err).__name__}: {err}"


class OpenAIJudge(RewardModel):
    """A generative judge served over the OpenAI chat API; thread-safe, one shared client.

    `verdict="generate"` lets the judge reason and parses the last verdict it writes.
    `verdict="logprob"` asks for the verdict string alone and reads the probability of each
    response letter at the first verdict position, so every item gets per-slot scores (the
    probability that the slot is ranked first) and a ranking even when the verdict is malformed.

    Errors that remain after the client's retries (connection refused, timeouts, HTTP 4xx/5xx)
    come back from `rank` as `Verdict(ranking=None, error=...)`; `score` raises them instead,
    because a float cannot carry an error message (see `score`).
    """

    #: appended to the judge's user message in logprob mode
    VERDICT_ONLY = "Answer with the verdict only, in the form {example}, and nothing else."
    #: how many alternatives per token logprob mode asks for (OpenAI's maximum)
    TOP_LOGPROBS = 20

    def __init__(
        self,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        verdict: VerdictMode = "generate",
        prompts: PromptSet | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 3,
        timeout: float = 600.0,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        if verdict not in ("generate", "logprob"):
            raise ValueError(f"verdict must be 'generate' or 'logprob', got {verdict!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.model = model
        self.base_url = base_url
        self.verdict = verdict
        self.prompts = prompts if prompts is not None else PromptSet.load()
        self.max_concurrency = max_concurrency
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.name = f"openai:{model}"
        # Local servers (vLLM, llama.cpp) accept any key; the client refuses to start without one.
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = openai.OpenAI(
            base_url=base_url, api_key=key, max_retries=max_retries, timeout=timeout
        )

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> OpenAIJudge:
        """Return a judge for `openai:NAME[@URL]` (what `--model` accepts)."""
        model, base_url = parse_openai_spec(spec)
        return cls(model, base_url, **kwargs)

    def _chat(self, messages: Messages, **extra: Any) -> Any:
        """Return one chat completion; the client retries transient failures itself."""
        if self.seed is not None:
            extra.setdefault("seed", self.seed)
        return self._client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=self.temperature,
            **extra,
        )

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        """Return the judge's verdict over `responses`, or an error record if the call failed."""
        messages = self.prompts.judge_messages(prompt, responses)
        n = len(responses)
        try:
            if self.verdict == "logprob":
                return self._rank_logprob(messages, n)
            return self._rank_generate(messages, n)
        except openai.OpenAIError as err:
            return Verdict(ranking=None, error=_error_text(err))

    def _rank_generate(self, messages: Messages, n: int) -> Verdict:
        """Let the judge explain, then parse its last verdict (None if it wrote none)."""
        completion = self._chat(messages, max_tokens=self.max_tokens)
        text = _content(completion)
        return Verdict(
            ranking=parse_ranking(text, n), text=text, prompt_tokens=_prompt_tokens(completion)
        )

    def _rank_logprob(self, messages: Messages, n: int) -> Verdict:
        """Ask for the verdict alone and read the first-place probability of every letter.

        An unparsable reply is ranked by those probabilities; past first place that order is only
        a guess (ties, e.g. letters absent from the top alternatives, keep display order).
        """
        tags = letters(n)
        instruction = self.VERDICT_ONLY.format(example=example_verdict(n))
        asked = [dict(m) for m in messages]
        asked[-1]["content"] = asked[-1]["content"] + "\n\n" + instruction
        completion = self._chat(
            asked,
            # room for "[[A>B>...]]" and a little slack, not for an explanation
            max_tokens=4 * n + 8,
            logprobs=True,
            top_logprobs=self.TOP_LOGPROBS,
        )
        text = _content(completion)
        probs = letter_probabilities(_token_logprobs(completion), tags)
        ranking = parse_ranking(text, n)
        if ranking is None and probs is not None:
            ranking = ranking_from_scores(probs)
        return Verdict(
            ranking=ranking, scores=probs, text=text, prompt_tokens=_prompt_tokens(completion)
        )

    def score(self, prompt: Messages, response: str) -> float:
        """Return the judge's `[Score: n]` for `response`, or NaN when the reply has none.

        A reply without a score is the judge's failure on this item, so it is NaN (test with
        `math.isnan`) rather than an exception. A failed call (after the client's retries) raises
        the `openai` exception: a float cannot carry the error, and a server failure must not pass
        for a score.
        """
        completion = self._chat(
            self.prompts.score_messages(prompt, response), max_tokens=self.max_tokens
        )
        value = parse_score(_content(completion))
        return math.nan if value is None else value

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def letter_probabilities(
    tokens: Sequence[tuple[str, Sequence[tuple[str, float]]]], tags: Sequence[str]
) -> list[float] | None:
    """Return each letter's normalised probability at the first verdict letter, else None.

    `tokens` lists the generated tokens, each with its (token, logprob) alternatives (the emitted
    token among them). The verdict position is the token holding the first letter after "[[", or,
    when the judge wrote no brackets, the first token that is a bare letter. Alternatives that
    spell the same letter (" A", "A", "[[A") add up; letters absent from them get probability 0.
    """
    position = _verdict_position(tokens, tags)
    if position is None:
        return None
    mass = dict.fromkeys(tags, 0.0)
    for token, logprob in dict(tokens[position][1]).items():
        match = _LETTER_TOKEN.match(token)
        if match and match.group(1) in mass:
            mass[match.group(1)] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0:
        return None
    return [mass[t] / total for t in tags]


def _verdict_position(
    tokens: Sequence[tuple[str, Sequence[tuple[str, float]]]], tags: Sequence[str]
) -> int | None:
    """Return the index of the token that emits the first verdict letter, else None."""
    starts: list[int] = []
    text = ""
    for token, _ in tokens:
        starts.append(len(text))
        text += token
    for match in _VERDICT_START.finditer(text):
        if match.group(1) in tags:
            char = match.start(1)
            return max(i for i, start in enumerate(starts) if start <= char)
    for i, (token, _) in enumerate(tokens):
        bare = _LETTER_TOKEN.match(token)
        if bare and bare.group(1) in tags:
            return i
    return None


def _content(completion: Any) -> str:
    """Return the reply text ('' when a server sends none, e.g. only reasoning)."""
    if not completion.choices:
        raise EmptyReplyError("the server returned no choices")
    return completion.choices[0].message.content or ""


def _token_logprobs(completion: Any) -> list[tuple[str, list[tuple[str, float]]]]:
    """Return each generated token with its alternatives, itself included ([] if none were sent)."""
    logprobs = completion.choices[0].logprobs
    if logprobs is None or not logprobs.content:
        return []
    tokens = []
    for item in logprobs.content:
        alternatives = [(alt.token, alt.logprob) for alt in (item.top_logprobs or [])]
        if all(token != item.token for token, _ in alternatives):
            alternatives.append((item.token, item.logprob))
        tokens.append((item.token, alternatives))
    return tokens


def _prompt_tokens(completion: Any) -> int:
    """Return the prompt's token count from the usage block, 0 when the server omits it."""
    usage = getattr(completion, "usage", None)
    return int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
