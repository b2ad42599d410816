"""Backends that score each (prompt, response) sequence on its own: a scalar reward head
(`scalar`) or a causal LM's length-normalised log-likelihood (`likelihood`). The prompt is encoded
once per item and its cache reused for every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict, ranking_from_scores
from longrm.rm.hf_common import HFBackend, LoadedModel, chat_ids, fit_prompt
from longrm.rm.prefix_cache import common_prefix_length


class SequenceScorer(HFBackend, RewardModel):
    """Scores prompt + response sequences; subclasses say what number a sequence gets."""

    def __init__(
        self, loaded: LoadedModel, prefix_cache: bool = True, thinking: bool = False
    ) -> None:
        super().__init__(loaded, prefix_cache, thinking)
        self.name = loaded.path

    def _split(
        self, prompt: Messages, response: str, head: list[int] | None = None
    ) -> tuple[list[int], list[int]]:
        """Return (prompt ids, response ids): together exactly the ids the chat template gives
        (prompt, response), split where they stop agreeing with the prompt's own ids (`head`,
        the template's ids of the prompt with the generation prompt, computed when not given).
        """
        full = chat_ids(
            self.tokenizer,
            [*prompt, {"role": "assistant", "content": response}],
            add_generation_prompt=False,
            thinking=self.thinking,
        )
        if head is None:
            head = self._head(prompt)
        k = common_prefix_length(head, full)
        return full[:k], full[k:]

    def _head(self, prompt: Messages) -> list[int]:
        """Return the template's ids of the prompt up to where the response starts."""
        return chat_ids(self.tokenizer, prompt, add_generation_prompt=True, thinking=self.thinking)

    def _score_ids(self, prompt_ids: list[int], response_ids: list[int]) -> float:
        raise NotImplementedError

    def scores(self, prompt: Messages, responses: Sequence[str]) -> tuple[list[float], bool, int]:
        """Return (one score per response, whether the context was cut, prompt tokens)."""
        longest = max(responses, key=len)

        def size(p: Messages) -> int:
            a, b = self._split(p, longest)
            return len(a) + len(b)

        prompt, truncated = fit_prompt(self.tokenizer, prompt, size, self.window)
        head = self._head(prompt)
        values = []
        prompt_ids: list[int] = []
        for response in responses:
            prompt_ids, response_ids = self._split(prompt, response, head)
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
        if not response_ids or not prompt_ids:  # nothing to score, or no position to score from
            return float("-inf")
        ids = prompt_ids + response_ids
        logits = self.runner.forward(ids, len(prompt_ids) - 1)[:-1]
        logprobs = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(response_ids, device=logprobs.device)
        return float(logprobs.gather(1, target[:, None]).mean())
