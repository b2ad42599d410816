"""The one reward-model interface that eval, voting, serving and Best-of-N all go through."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from longrm.items import Messages


@dataclass
class Verdict:
    """A reward model's judgment of responses shown in display slots 0..n-1 (A, B, C, ...).

    `ranking` lists display slots best first and is None when the verdict could not be parsed.
    `scores` holds one number per display slot, higher is better (a reward, a log-likelihood or a
    verdict probability); it is None for verdicts that carry no confidence.
    """

    ranking: list[int] | None
    scores: list[float] | None = None
    text: str = ""
    truncated: bool = False
    error: str | None = None
    prompt_tokens: int = 0

    @property
    def parsed(self) -> bool:
        """Return True when the verdict yielded a ranking."""
        return self.ranking is not None


@dataclass(frozen=True)
class Sampling:
    """How a generating judge decodes one call: temperature 0 is greedy; a seed makes a sampled
    call repeatable, so several seeds of one model act as several judges (consistency voting).
    """

    temperature: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature}")

    @property
    def greedy(self) -> bool:
        """Return True when the call decodes greedily (temperature 0)."""
        return self.temperature == 0.0


@dataclass
class PointwiseJudgment:
    """A pointwise judgment: the parsed `[Score: n]` (None when the reply holds none) and the
    judge's text, whose explanation voting keeps as a training target.
    """

    score: float | None
    text: str = ""
    forced: bool = False  # the score was read by likelihood after a text that gave none


def ranking_from_scores(scores: Sequence[float]) -> list[int]:
    """Return display slots sorted by score, best first (ties keep the display order)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


class RewardModel(ABC):
    """Scores a response, compares two, ranks N; every backend implements `rank` and `score`.

    `prompt` is the task prompt as chat messages, context and question included; responses are
    the candidate answers to it in display order.
    """

    name: str = "reward-model"
    #: how many calls may run at once (1 for in-process models, more for remote servers)
    max_concurrency: int = 1

    @abstractmethod
    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        """Return a verdict over `responses` shown in this order."""

    @abstractmethod
    def score(self, prompt: Messages, response: str) -> float:
        """Return a pointwise reward of one response (higher is better)."""

    def score_many(self, prompt: Messages, responses: Sequence[str]) -> list[float]:
        """Return `score` of each response to one prompt, in order.

        An RL step scores many rollouts of one prompt: backends that can share the prompt's work
        across them (encode it once, run the responses as one batch) override this; the default
        scores one response at a time.
        """
        return [self.score(prompt, response) for response in responses]

    def judge_score(
        self, prompt: Messages, response: str, sampling: Sampling | None = None
    ) -> PointwiseJudgment:
        """Return the pointwise judgment of one response, with the judge's text when it writes one.

        The default wraps `score` (no text; NaN becomes None) and decodes only greedily: backends
        that generate override it to return their text and honour `sampling`.
        """
        if sampling is not None and not sampling.greedy:
            raise ValueError(f"{self.name} does not sample: it scores without generating text")
        value = self.score(prompt, response)
        return PointwiseJudgment(score=None if math.isnan(value) else value)

    def rank_item(self, prompt: Messages, responses: Sequence[str], *, pairwise: bool) -> Verdict:
        """Return the verdict on a benchmark item shown in this order.

        `pairwise` says whether the item is a pair or a Best-of-N ranking (which can also hold two
        candidates); judges that word the two differently override this, others just rank.
        """
        return self.rank(prompt, responses)

    def compare(self, prompt: Messages, first: str, second: str) -> Verdict:
        """Return a pairwise verdict: ranking [0, 1] means `first` is better."""
        return self.rank(prompt, [first, second])

    def info(self) -> dict[str, Any]:
        """Return what a run should record about the model as loaded (window, scaling...)."""
        return {"name": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release resources (servers, thread pools); the default holds none."""
