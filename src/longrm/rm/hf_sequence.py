"""Backends that score each (prompt, response) sequence on its own: a scalar reward head
(`scalar`) or a causal LM's length-normalised log-likelihood (`likelihood`). The prompt is encoded
once per item and its cache reused for every candidate; two or more candidates run together as
padded batches over that cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict, ranking_from_scores
from longrm.rm.hf_common import HFBackend, LoadedModel, chat_ids, fit_prompt
from longrm.rm.prefix_cache import common_prefix_length


class SequenceScorer(HFBackend, RewardModel):
    """Scores prompt + response sequences; subclasses say what number a sequence gets."""

    #: responses to one prompt run as padded batches; False: one pass each (the reference)
    batched = True

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

    def _scoring_pass(
        self, prompt_ids: list[int], response_ids: list[int]
    ) -> tuple[list[int], int] | None:
        """Return the (ids, outputs_from) pass that scores the response; None when the
        response gets no score (-inf) without a pass.
        """
        raise NotImplementedError

    def _value(self, response_ids: list[int], outputs: torch.Tensor) -> float:
        """Return the score from the pass's outputs (PrefixForward.forward's rows)."""
        raise NotImplementedError

    def _score_ids(self, prompt_ids: list[int], response_ids: list[int]) -> float:
        """Return one response's score from a pass of its own."""
        job = self._scoring_pass(prompt_ids, response_ids)
        if job is None:
            return float("-inf")
        return self._value(response_ids, self.runner.forward(*job))

    def _score_batch(self, splits: list[tuple[list[int], list[int]]]) -> list[float]:
        """Return the scores of responses to one prompt from padded passes over it (what
        `_score_ids` gives each, within float tolerance).
        """
        jobs = [self._scoring_pass(p, r) for p, r in splits]
        todo = [(i, job) for i, job in enumerate(jobs) if job is not None]
        outputs = self.runner.forward_many([j[0] for _, j in todo], [j[1] for _, j in todo])
        values = [float("-inf")] * len(splits)
        for (i, _), out in zip(todo, outputs, strict=True):
            values[i] = self._value(splits[i][1], out)
        return values

    def _fit(self, prompt: Messages, response: str) -> tuple[Messages, bool]:
        """Return the prompt cut to fit the window beside `response`, and whether it was cut."""

        def size(p: Messages) -> int:
            a, b = self._split(p, response)
            return len(a) + len(b)

        return fit_prompt(self.tokenizer, prompt, size, self.window)

    def _score_fitted(self, prompt: Messages, responses: Sequence[str]) -> tuple[list[float], int]:
        """Return (one score per response, prompt tokens) for a prompt that fits them all."""
        head = self._head(prompt)
        splits = [self._split(prompt, response, head) for response in responses]
        if self.batched and len(splits) > 1:
            values = self._score_batch(splits)
        else:
            values = [self._score_ids(p, r) for p, r in splits]
        return values, len(splits[-1][0])

    def scores(self, prompt: Messages, responses: Sequence[str]) -> tuple[list[float], bool, int]:
        """Return (one score per response, whether the context was cut, prompt tokens); the
        prompt is cut once, to fit beside the longest response.
        """
        prompt, truncated = self._fit(prompt, max(responses, key=len))
        values, n_tokens = self._score_fitted(prompt, responses)
        return values, truncated, n_tokens

    def score_many(self, prompt: Messages, responses: Sequence[str]) -> list[float]:
        """Return what `score` gives each response, responses sharing a fitted prompt (all of
        them unless the context must be cut) scored together over it.
        """
        groups: dict[str, tuple[Messages, list[int]]] = {}
        for i, response in enumerate(responses):
            fitted, _ = self._fit(prompt, response)
            groups.setdefault(json.dumps(fitted), (fitted, []))[1].append(i)
        values = [0.0] * len(responses)
        for fitted, members in groups.values():
            got, _ = self._score_fitted(fitted, [responses[i] for i in members])
            for i, value in zip(members, got, strict=True):
                values[i] = value
        return values

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

    def _scoring_pass(
        self, prompt_ids: list[int], response_ids: list[int]
    ) -> tuple[list[int], int] | None:
        # transformers pools a classifier at the last token that is not the pad token; chat
        # templates often end a turn with the pad (= eos) token. Dropping trailing pads gives the
        # same pooled position and makes sure the tokens run past the cache include it.
        pad = self.loaded.model.config.pad_token_id
        ids = prompt_ids + response_ids
        while len(ids) > 1 and ids[-1] == pad:
            ids.pop()
        return ids, len(ids) - 1

    def _value(self, response_ids: list[int], outputs: torch.Tensor) -> float:
        return float(outputs[-1, 0])


class LikelihoodRewardModel(SequenceScorer):
    """A causal LM's mean per-token log-probability of the response given the prompt: the
    implicit reward that Stage II (LOGO/SimPO-style, reference-free) optimises.
    """

    def _scoring_pass(
        self, prompt_ids: list[int], response_ids: list[int]
    ) -> tuple[list[int], int] | None:
        if not response_ids or not prompt_ids:  # nothing to score, or no position to score from
            return None
        return prompt_ids + response_ids, len(prompt_ids) - 1

    def _value(self, response_ids: list[int], outputs: torch.Tensor) -> float:
        logprobs = torch.log_softmax(outputs[:-1], dim=-1)
        target = torch.tensor(response_ids, device=logprobs.device)
        return float(logprobs.gather(1, target[:, None]).mean())
