"""A reward model behind any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp, hosted).

The official `openai` client does the HTTP, the timeouts and the retries with backoff; this module
only builds judge prompts, reads verdicts back, and turns failures that survive the retries into
per-item error records, so that one bad item or a flaky server never crashes a long evaluation.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import openai
from openai.resources.chat.completions import Completions

from longrm.items import Messages
from longrm.rm.base import PointwiseJudgment, RewardModel, Sampling, Verdict
from longrm.rm.prompts import PromptSet, example_verdict, letters
from longrm.rm.protocols import check_protocol
from longrm.rm.verdicts import parse_paper_verdict, parse_ranking, parse_score

DEFAULT_BASE_URL = "https://api.openai.com/v1"
VerdictMode = Literal["generate", "logprob"]
Parser = Callable[[str], list[int] | None]

_SPEC_PREFIX = "openai:"
# The first letter of a verdict: the character right after "[[" (spaces allowed).
_VERDICT_START = re.compile(r"\[\[\s*([A-Z])")
# A token that starts a verdict with one letter: optional brackets/space, the letter, then only
# what may follow it inside a verdict (">B", "]]"), so that "Answer" is not an "A".
_LETTER_TOKEN = re.compile(r"^[\s\[]*([A-Z])(?:\s*>\s*[A-Z]?)*[\s\]>]*$")
#: what `prefill` puts in the assistant's mouth: the judge's reply continues after it
VERDICT_OPEN = "[["
#: the request fields that make vLLM and SGLang continue the last (assistant) message
PREFILL_FIELDS: dict[str, Any] = {"continue_final_message": True, "add_generation_prompt": False}

#: a request-params value replaced by the judge's token budget of that request
TOKEN_BUDGET = "{max_tokens}"
#: named request profiles for `parse_openai_params`: overrides of the judge's request fields
PARAM_PROFILES: dict[str, dict[str, Any]] = {
    # what the judge sends by itself: temperature, seed, max_tokens (and logprobs in that mode)
    "default": {},
    # OpenAI o-series / gpt-5 style models reject these fields and count hidden reasoning tokens
    # against max_completion_tokens
    "reasoning": {
        "temperature": None,
        "seed": None,
        "logprobs": None,
        "top_logprobs": None,
        "max_tokens": None,
        "max_completion_tokens": TOKEN_BUDGET,
    },
    # Qwen3-style chat templates on vLLM/SGLang: no <think> block before the answer
    "vllm-no-thinking": {"extra_body": {"chat_template_kwargs": {"enable_thinking": False}}},
}
# Fields the judge itself owns: overriding them would break the request or its parsing.
_OWNED = {
    "model": "the judge sends its own model name",
    "messages": "the judge builds the messages",
    "stream": "the judge reads whole replies, not streams",
}
# Keyword arguments of the client's `create`; any other field travels in `extra_body`.
_CLIENT_ARGS = frozenset(inspect.signature(Completions.create).parameters) - {"self"}
_INT_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "seed", "top_logprobs", "n"})
_NUMBER_FIELDS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
_BOOL_FIELDS = frozenset({"logprobs"})


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


def parse_openai_params(value: str | None) -> dict[str, Any]:
    """Return request overrides from a profile name or a JSON object ('' or None: `default`).

    Profiles are the keys of `PARAM_PROFILES`. A JSON object sets request fields: a value replaces
    the judge's own (temperature, seed, max_tokens, logprobs, top_logprobs), null drops the field,
    the string "{max_tokens}" stands for the judge's token budget of the request, "extra_body" is
    merged into the request body, and any field the `openai` client has no argument for is sent
    in the body as is. Raises ValueError naming the bad key or value.
    """
    text = (value or "").strip()
    if not text:
        return {}
    if text in PARAM_PROFILES:
        return copy.deepcopy(PARAM_PROFILES[text])
    usage = f"expected a profile ({', '.join(PARAM_PROFILES)}) or a JSON object"
    try:
        params = json.loads(text)
    except json.JSONDecodeError as err:
        if not text.startswith("{"):
            raise ValueError(f"unknown request-params profile {text!r}; {usage}") from None
        raise ValueError(f"request params {text!r} are not valid JSON ({err}); {usage}") from None
    if not isinstance(params, dict):
        raise ValueError(f"request params {text!r} are not a JSON object; {usage}")
    check_openai_params(params)
    return params


def check_openai_params(params: Mapping[str, Any]) -> None:
    """Return None if `params` are usable request overrides; else raise ValueError naming it."""
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"request params: {key!r} is not a field name")
        if key in _OWNED:
            raise ValueError(f"request params: {key!r} cannot be set: {_OWNED[key]}")
        if value is None or value == TOKEN_BUDGET:
            continue
        if key == "extra_body" and not isinstance(value, dict):
            raise ValueError(f"request params: 'extra_body' must be a JSON object, got {value!r}")
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if key in _INT_FIELDS and not is_int:
            raise ValueError(f"request params: {key!r} must be an integer or null, got {value!r}")
        if key in _NUMBER_FIELDS and not (is_int or isinstance(value, float)):
            raise ValueError(f"request params: {key!r} must be a number or null, got {value!r}")
        if key in _BOOL_FIELDS and not isinstance(value, bool):
            raise ValueError(f"request params: {key!r} must be true, false or null, got {value!r}")


class EmptyReplyError(openai.OpenAIError):
    """The server answered without any choice (a malformed reply, recorded like a failed call)."""


def _error_text(err: BaseException) -> str:
    """Return 'ExceptionClass: message', the form error records carry."""
    return f"{type(err).__name__}: {err}"


class OpenAIJudge(RewardModel):
    """A generative judge served over the OpenAI chat API; thread-safe, one shared client.

    `verdict="generate"` lets the judge reason and parses the last verdict it writes.
    `verdict="logprob"` asks for the verdict string alone and reads the probability of each
    response letter at the first verdict letter (the one right after "[["). The ranking comes from
    the reply's text only: a reply whose letters do not form a valid verdict is a parse failure
    (`ranking=None`); its letter probabilities are still kept as `scores` (the probability that
    each slot is ranked first) when the reply opened a verdict with a response letter.

    `prefill=True` (logprob mode only) ends the request with an assistant message "[[" and asks
    the server to continue it (`PREFILL_FIELDS`, which vLLM and SGLang accept), so the letter
    probabilities are read at the first generated token, where the in-process judge reads them;
    the reply is parsed, and kept as `text`, as "[[" + reply. Generate mode refuses it: there the
    judge explains before its verdict, so the reply does not start with one.

    `request_params` (see `parse_openai_params`) overrides request fields on every request.

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
        protocol: str = "longrm",
        prefill: bool = False,
        request_params: Mapping[str, Any] | None = None,
    ) -> None:
        if verdict not in ("generate", "logprob"):
            raise ValueError(f"verdict must be 'generate' or 'logprob', got {verdict!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if prefill and verdict != "logprob":
            raise ValueError(
                "prefill applies to verdict='logprob' only: a 'generate' judge explains before "
                "its verdict, so its reply cannot start with '[['"
            )
        params = dict(request_params or {})
        check_openai_params(params)
        if verdict == "logprob":
            for key in ("logprobs", "top_logprobs"):
                if key in params and not params[key]:
                    raise ValueError(
                        f"verdict='logprob' reads token logprobs, but request_params set {key!r} "
                        f"to {params[key]!r} (hosted reasoning models, the 'reasoning' profile, "
                        "return none); use verdict='generate'"
                    )
        self.model = model
        self.base_url = base_url
        self.verdict = verdict
        self.prompts = prompts if prompts is not None else PromptSet.load()
        self.max_concurrency = max_concurrency
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.prefill = prefill
        self.protocol = check_protocol(protocol)
        self.request_params = params
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

    def request_fields(
        self, budget: int, *, prefill: bool = False, **fields: Any
    ) -> dict[str, Any]:
        """Return the keyword arguments of one request, `request_params` applied, sans messages.

        `budget` is the request's token limit, `fields` what the mode adds (logprobs).
        """
        sent: dict[str, Any] = {"temperature": self.temperature, "max_tokens": budget}
        if self.seed is not None:
            sent["seed"] = self.seed
        sent.update(fields)
        body: dict[str, Any] = dict(self.request_params.get("extra_body") or {})
        for key, value in self.request_params.items():
            if key == "extra_body":
                continue
            target = sent if key in _CLIENT_ARGS else body
            if value is None:
                target.pop(key, None)
            else:
                target[key] = budget if value == TOKEN_BUDGET else value
        if prefill:
            # last, so that no profile can turn the continuation off behind the judge's back
            body.update(PREFILL_FIELDS)
        if body:
            sent["extra_body"] = body
        return sent

    def _chat(self, messages: Messages, budget: int, **fields: Any) -> Any:
        """Return one chat completion; the client retries transient failures itself."""
        return self._client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            **self.request_fields(budget, **fields),
        )

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        """Return the judge's verdict over `responses`, or an error record if the call failed."""
        return self.rank_item(prompt, responses, pairwise=len(responses) == 2)

    def rank_item(self, prompt: Messages, responses: Sequence[str], *, pairwise: bool) -> Verdict:
        """Return the verdict on an item; the authors' protocol asks Best-of-2 for a ranking and
        parses by their rules.
        """
        as_ranking = not pairwise if self.protocol == "paper" else None
        messages = self.prompts.judge_messages(prompt, responses, as_ranking)
        n = len(responses)

        def parse(text: str) -> list[int] | None:
            if self.protocol == "paper":
                return parse_paper_verdict(text, pairwise=not as_ranking)
            return parse_ranking(text, n)

        try:
            if self.verdict == "logprob":
                return self._rank_logprob(messages, n, parse, as_ranking)
            return self._rank_generate(messages, parse)
        except openai.OpenAIError as err:
            return Verdict(ranking=None, error=_error_text(err))

    def _rank_generate(self, messages: Messages, parse: Parser) -> Verdict:
        """Let the judge explain, then parse its verdict (None if it wrote none)."""
        completion = self._chat(messages, self.max_tokens)
        text = _content(completion)
        return Verdict(ranking=parse(text), text=text, prompt_tokens=_prompt_tokens(completion))

    def _rank_logprob(
        self, messages: Messages, n: int, parse: Parser, as_ranking: bool | None = None
    ) -> Verdict:
        """Ask for the verdict alone; parse it and read the first-place probability of every letter.

        The ranking is the parsed verdict or None: the probabilities rank first place only, and
        an order guessed from them would pass a malformed reply off as a verdict.
        """
        tags = letters(n)
        instruction = self.VERDICT_ONLY.format(example=example_verdict(n, as_ranking))
        asked = [dict(m) for m in messages]
        asked[-1]["content"] = asked[-1]["content"] + "\n\n" + instruction
        if self.prefill:
            asked.append({"role": "assistant", "content": VERDICT_OPEN})
        completion = self._chat(
            asked,
            # room for "[[A>B>...]]" and a little slack, not for an explanation
            4 * n + 8,
            prefill=self.prefill,
            logprobs=True,
            top_logprobs=self.TOP_LOGPROBS,
        )
        text = _content(completion)
        tokens = _token_logprobs(completion)
        if self.prefill:
            # the prefilled "[[" as a certain token, so the first generated one holds the letter
            text = VERDICT_OPEN + text
            tokens = [(VERDICT_OPEN, [(VERDICT_OPEN, 0.0)]), *tokens]
        return Verdict(
            ranking=parse(text),
            scores=letter_probabilities(tokens, tags),
            text=text,
            prompt_tokens=_prompt_tokens(completion),
        )

    def score(self, prompt: Messages, response: str) -> float:
        """Return the judge's `[Score: n]` for `response`, or NaN when the reply has none.

        A reply without a score is the judge's failure on this item, so it is NaN (test with
        `math.isnan`) rather than an exception. A failed call (after the client's retries) raises
        the `openai` exception: a float cannot carry the error, and a server failure must not pass
        for a score.
        """
        value = self.judge_score(prompt, response).score
        return math.nan if value is None else value

    def judge_score(
        self, prompt: Messages, response: str, sampling: Sampling | None = None
    ) -> PointwiseJudgment:
        """Return the reply's `[Score: n]` (None when it holds none) and the reply's text.

        `sampling` replaces the judge's temperature (and seed, when it names one) for this call;
        `request_params` still apply on top, so a profile that drops those fields drops them.
        A failed call raises the `openai` exception, as `score` does.
        """
        fields: dict[str, Any] = {}
        if sampling is not None:
            fields["temperature"] = sampling.temperature
            if sampling.seed is not None:
                fields["seed"] = sampling.seed
        completion = self._chat(
            self.prompts.score_messages(prompt, response), self.max_tokens, **fields
        )
        text = _content(completion)
        return PointwiseJudgment(score=parse_score(text), text=text)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def letter_probabilities(
    tokens: Sequence[tuple[str, Sequence[tuple[str, float]]]], tags: Sequence[str]
) -> list[float] | None:
    """Return each letter's normalised probability at the first verdict letter, else None.

    `tokens` lists the generated tokens, each with its (token, logprob) alternatives (the emitted
    token among them). The verdict position is the token holding the first response letter right
    after "[["; a reply without one (prose, a bare letter) has no verdict position, hence None.
    Alternatives that spell the same letter (" A", "A", "[[A") add up; letters absent from them
    get probability 0.
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
