"""Backends that score each (prompt, response) sequence on its own: a scalar reward head
(`scalar`) or a causal LM's length-normalised log-likelihood (`likelihood`). The prompt is encoded
once per item and its cache reused for every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict, ranking_from_scores
from longrm.rm.hf_common import HFBackend, LoadedModel, encode, fit_prompt, render_chat


class SequenceScorer(HFBackend, RewardModel):
    """Scores prompt + response sequences; subclasses say what number a sequence gets."""

    def __init__(self, loaded: LoadedModel, prefix_cache: bool = True) -> None:
        super().__init__(loaded, prefix_cache)
        self.name = loaded.path

    def _split(self, prompt: Messages, response: str) -> tuple[list[int], list[int]]:
        """Return (prompt ids, response ids): the prompt's ids are the same for every response."""
        prefix = render_chat(self.tokenizer, prompt, add_generation_prompt=True)
        full = render_chat(
            self.tokenizer,
            [*prompt, {"role": "assistant", "content": response}],
            add_generation_prompt=False,
        )
        if not full.startswith(prefix):  # a template that rewrites earlier turns
            return encode(self.tokenizer, prefix), encode(self.tokenizer, response)
        return encode(self.tokenizer, prefix), encode(self.tokenizer, full[len(prefix) :].rstrip())

    def _score_ids(self, prompt_ids: list[int], response_ids: list[int]) -> float:
        raise NotImplementedError

    def scores(self, prompt: Messages, responses: Sequence[str]) -> tuple[list[float], bool, int]:
        """Return (one score per response, whether the context was cut, prompt tokens)."""
        longest = max(responses, key=len)

        def size(p: Messages) -> int:
            a, b = self._split(p, longest)
            return len(a) + len(b)

        prompt, truncated = fit_prompt(self.tokenizer, prompt, size, self.window)
        values = []
        prompt_ids: list[int] = []
        for response in responses:
            prompt_ids, response_ids = self._split(prompt, response)
            values.append(self._score_ids(prompt_ids, response_ids))
        return values, truncated, len(prompt_ids)

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        """Return the ranking by score; the scores travel with it (for AUC)."""
        values, truncated, n_tokens = self.scores(prompt, responses)
        return Verdict(
            ranking=ranking_from_scores(values),
            scores=values,
            truncated=truncated,
            prompt_tokens=n_tokens,
        )

    def score(self, prompt: Messages, response: str) -> float:
        """Return the reward of one response."""
        return self.scores(prompt, [response])[0][0]


class ScalarRewardModel(SequenceScorer):
    """A sequence-classification reward model: the head's value at the last token."""

    def _score_ids(self, prompt_ids: list[int], response_ids: list[int]) -> float:
        # transformers pools a classifier at the last token that is not the pad token; chat
        # templates often end a turn with the pad (= eos) token. Dropping trailing pads gives the
        # same pooled position and makes sure the tokens run past the cache include it.
        pad = self.loaded.model.config.pad_token_id
        ids = prompt_ids + response_ids
        while len(ids) > 1 and ids[-1] == pad:
            ids.pop()
        return float(self.runner.forward(ids, len(ids) - 1)[-1, 0])


class LikelihoodRewardModel(SequenceScorer):
    """A causal LM's mean per-token log-probability of the response given the prompt: the
    implicit reward that Stage II (LOGO/SimPO-style, reference-free) optimises.
    """

    def _score_ids(self, prompt_ids: list[int], response_ids: list[int]) -> float:
        if not response_ids:
            return float("-inf")
        ids = prompt_ids + response_ids
        logits = self.runner.forward(ids, len(prompt_ids) - 1)[:-1]
        logprobs = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(response_ids, device=logprobs.device)
        return float(logprobs.gather(1, target[:, None]).mean())
