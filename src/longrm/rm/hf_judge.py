"""A causal LM as generative judge, in two verdict modes.

`generate`: the judge writes free text ending in a verdict, which is parsed; format failures are
counted. `logprob`: no text is generated; the probability of every well-formed verdict string
right after the prompt is compared, so there is no parse failure and the verdict comes with a
confidence (hence AUC). Both share the context's cache across response orders.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch

from longrm.items import Messages
from longrm.rm.base import PointwiseJudgment, RewardModel, Sampling, Verdict
from longrm.rm.hf_common import (
    HFBackend,
    LoadedModel,
    PromptTooLongError,
    encode,
    fit_prompt,
    render_chat,
)
from longrm.rm.prompts import PromptSet
from longrm.rm.protocols import check_protocol, paper_cut
from longrm.rm.verdicts import (
    parse_paper_verdict,
    parse_ranking,
    parse_score,
    verdict_strings,
)

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
        protocol: str = "longrm",
        thinking: bool = False,
        force_score: bool = False,
    ) -> None:
        super().__init__(loaded, prefix_cache, thinking)
        if verdict not in ("generate", "logprob"):
            raise ValueError(f"unknown verdict mode {verdict!r}: use generate or logprob")
        self.protocol = check_protocol(protocol)
        self.verdict = verdict
        self.prompts = prompts or PromptSet.load()
        self.max_new_tokens = max_new_tokens
        self.force_score = force_score
        self.name = loaded.path
        self.batch_verdicts = True  # False scores verdict strings one pass each (the reference)

    def _reserve(self) -> int:
        if self.verdict != "generate":
            return _LOGPROB_RESERVE
        return self.max_new_tokens + (_LOGPROB_RESERVE if self.force_score else 0)

    def _prompt_ids(self, messages: Messages) -> list[int]:
        return encode(self.tokenizer, render_chat(self.tokenizer, messages, True, self.thinking))

    def _fit(
        self, prompt: Messages, build: Callable[[Messages], Messages]
    ) -> tuple[list[int], bool]:
        """Return the judge's prompt ids, cutting the task's context to leave room to answer.

        Under the authors' protocol the templated prompt is cut by their rule instead (head and
        tail of 131,072+ token prompts), and a prompt still over the window is an error.
        """
        if self.protocol == "paper":
            ids, cut = paper_cut(self._prompt_ids(build(prompt)))
            if len(ids) + self._reserve() > self.window:
                raise PromptTooLongError(
                    f"the prompt needs {len(ids)} tokens plus {self._reserve()} to answer and the "
                    f"window is {self.window}: raise --max-length (with --rope-scaling)"
                )
            return ids, cut

        def size(p: Messages) -> int:
            return len(self._prompt_ids(build(p)))

        fitted, truncated = fit_prompt(self.tokenizer, prompt, size, self.window - self._reserve())
        return self._prompt_ids(build(fitted)), truncated

    def _generate(self, ids: list[int], sampling: Sampling | None = None) -> str:
        """Return the judge's text after `ids`: greedy, or sampled as `sampling` says."""
        return str(
            self.tokenizer.decode(self._generate_ids(ids, sampling), skip_special_tokens=True)
        )

    def _generate_ids(self, ids: list[int], sampling: Sampling | None = None) -> list[int]:
        """Return the token ids the judge writes after `ids` (see `_generate`)."""
        decode: dict[str, Any] = {"do_sample": False}
        if sampling is not None and not sampling.greedy:
            decode = {"do_sample": True, "temperature": sampling.temperature}
        with self._seeded(sampling.seed if sampling is not None else None):
            new = self.runner.generate(
                ids,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.loaded.model.config.pad_token_id,
                **decode,
            )
        return list(new)

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed torch's RNG for one call and restore it after, so that a seeded call gives the
        same text whatever ran before it (a resumed run draws what the first run drew).
        """
        if seed is None:
            yield
            return
        device = self.loaded.model.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield

    def _continuation_logprobs(self, ids: list[int], continuations: list[str]) -> list[float]:
        """Return log P(continuation | ids) for each string, all scored in one pass over the
        prompt's cache (a prefix tree of the strings' tokens) where the model allows it.
        """
        conts = [encode(self.tokenizer, text) for text in continuations]
        return self.runner.continuation_logprobs(ids, conts, tree=self.batch_verdicts)

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        """Return the judge's verdict over responses in this display order."""
        return self.rank_item(prompt, responses, pairwise=len(responses) == 2)

    def rank_item(self, prompt: Messages, responses: Sequence[str], *, pairwise: bool) -> Verdict:
        """Return the verdict on an item; the authors' protocol asks Best-of-2 for a ranking."""
        n = len(responses)
        as_ranking = not pairwise if self.protocol == "paper" else None
        ids, truncated = self._fit(
            prompt, lambda p: self.prompts.judge_messages(p, responses, as_ranking)
        )
        if self.verdict == "generate":
            text = self._generate(ids)
            ranking = (
                parse_paper_verdict(text, pairwise=not as_ranking)
                if self.protocol == "paper"
                else parse_ranking(text, n)
            )
            return Verdict(ranking=ranking, text=text, truncated=truncated, prompt_tokens=len(ids))
        options = verdict_strings(n, as_ranking=bool(as_ranking))
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
        if self.verdict == "generate":
            value = self.judge_score(prompt, response).score
            return math.nan if value is None else value
        ids, _ = self._fit(prompt, lambda p: self.prompts.score_messages(p, response))
        options = [f"\n[Score: {k}]" for k in range(11)]
        probs = torch.softmax(torch.tensor(self._continuation_logprobs(ids, options)), dim=0)
        return float((probs * torch.arange(11)).sum())

    def judge_score(
        self, prompt: Messages, response: str, sampling: Sampling | None = None
    ) -> PointwiseJudgment:
        """Return the generated `[Analysis] ... [Score: n]` text and its parsed score (None when
        it holds none), decoded as `sampling` says; logprob mode has no text (see RewardModel).
        """
        if self.verdict != "generate":
            return super().judge_score(prompt, response, sampling)
        ids, _ = self._fit(prompt, lambda p: self.prompts.score_messages(p, response))
        new = self._generate_ids(ids, sampling)
        text = str(self.tokenizer.decode(new, skip_special_tokens=True))
        score = parse_score(text)
        if score is not None or not self.force_score:
            return PointwiseJudgment(score=score, text=text)
        return self._forced_score(ids, new, text)

    def _forced_score(self, ids: list[int], new: list[int], text: str) -> PointwiseJudgment:
        """Close a judgment that holds no `[Score: n]` with the score the model finds likeliest
        after its own text (`force_score`): small judges explain, then never write the score.
        """
        special = set(self.tokenizer.all_special_ids)
        while new and new[-1] in special:  # continue the text, not an ended turn
            new = new[:-1]
        options = [f"\n[Score: {k}]" for k in range(11)]
        logps = self._continuation_logprobs([*ids, *new], options)
        best = max(range(11), key=logps.__getitem__)
        return PointwiseJudgment(
            score=float(best), text=f"{text.rstrip()}\n[Score: {best}]", forced=True
        )
