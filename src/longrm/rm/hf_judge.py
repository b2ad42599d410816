"""A causal LM as generative judge, in two verdict modes.

`generate`: the judge writes free text ending in a verdict, which is parsed; format failures are
counted. `logprob`: no text is generated; the probability of every well-formed verdict string
right after the prompt is compared, so there is no parse failure and the verdict comes with a
confidence (hence AUC). Both share the context's cache across response orders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict
from longrm.rm.hf_common import HFBackend, LoadedModel, encode, fit_prompt, render_chat
from longrm.rm.prompts import PromptSet
from longrm.rm.verdicts import parse_ranking, parse_score, verdict_strings

VerdictMode = Literal["generate", "logprob"]
_LOGPROB_RESERVE = 24  # tokens kept free for the longest verdict string


class JudgeRewardModel(HFBackend, RewardModel):
    """Generative judge: pairwise [[A]]/[[B]], rankings [[A>B>C]], pointwise [Score: n]."""

    def __init__(
        self,
        loaded: LoadedModel,
        verdict: VerdictMode = "generate",
        prompts: PromptSet | None = None,
        max_new_tokens: int = 256,
        prefix_cache: bool = True,
    ) -> None:
        super().__init__(loaded, prefix_cache)
        if verdict not in ("generate", "logprob"):
            raise ValueError(f"unknown verdict mode {verdict!r}: use generate or logprob")
        self.verdict = verdict
        self.prompts = prompts or PromptSet.load()
        self.max_new_tokens = max_new_tokens
        self.name = loaded.path

    def _reserve(self) -> int:
        return self.max_new_tokens if self.verdict == "generate" else _LOGPROB_RESERVE

    def _prompt_ids(self, messages: Messages) -> list[int]:
        return encode(self.tokenizer, render_chat(self.tokenizer, messages, True))

    def _fit(
        self, prompt: Messages, build: Callable[[Messages], Messages]
    ) -> tuple[list[int], bool]:
        """Return the judge's prompt ids, cutting the task's context to leave room to answer."""

        def size(p: Messages) -> int:
            return len(self._prompt_ids(build(p)))

        fitted, truncated = fit_prompt(self.tokenizer, prompt, size, self.window - self._reserve())
        return self._prompt_ids(build(fitted)), truncated

    def _generate(self, ids: list[int]) -> str:
        new = self.runner.generate(
            ids,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=self.loaded.model.config.pad_token_id,
        )
        return str(self.tokenizer.decode(new, skip_special_tokens=True))

    def _continuation_logprobs(self, ids: list[int], continuations: list[str]) -> list[float]:
        """Return log P(continuation | ids) for each string, reusing the prompt's cache."""
        out = []
        for text in continuations:
            cont = encode(self.tokenizer, text)
            logits = self.runner.forward(ids + cont, len(ids) - 1)[:-1]
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(cont, device=logprobs.device)[:, None]
            out.append(float(logprobs.gather(1, target).sum()))
        return out

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        """Return the judge's verdict over responses in this display order."""
        n = len(responses)
        ids, truncated = self._fit(prompt, lambda p: self.prompts.judge_messages(p, responses))
        if self.verdict == "generate":
            text = self._generate(ids)
            return Verdict(
                ranking=parse_ranking(text, n),
                text=text,
                truncated=truncated,
                prompt_tokens=len(ids),
            )
        options = verdict_strings(n)
        logps = self._continuation_logprobs(ids, [s for s, _ in options])
        probs = torch.softmax(torch.tensor(logps), dim=0).tolist()
        best = max(range(len(options)), key=lambda i: probs[i])
        first_place = [0.0] * n  # P(slot is ranked first), summed over full rankings
        for (_, ranking), p in zip(options, probs, strict=True):
            first_place[ranking[0]] += p
        return Verdict(
            ranking=options[best][1],
            scores=first_place,
            text=options[best][0],
            truncated=truncated,
            prompt_tokens=len(ids),
        )

    def score(self, prompt: Messages, response: str) -> float:
        """Return a 0-10 pointwise score: parsed from text, or the expected score by logprob.

        In generate mode an unparseable judgment scores NaN (the caller decides what that means).
        """
        ids, _ = self._fit(prompt, lambda p: self.prompts.score_messages(p, response))
        if self.verdict == "generate":
            value = parse_score(self._generate(ids))
            return math.nan if value is None else value
        options = [f"\n[Score: {k}]" for k in range(11)]
        probs = torch.softmax(torch.tensor(self._continuation_logprobs(ids, options)), dim=0)
        return float((probs * torch.arange(11)).sum())
