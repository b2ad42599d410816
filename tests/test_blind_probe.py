"""The trained blind probe: a fine-tuned default model that never sees the context.

The guard: trained on one seed's built pairs and tested on another seed's, it stays near chance
(the builder gives no candidate-side cue a fine-tuned model can learn), while the same probe,
trained the same way on pairs with a planted tell-tale word, finds it (the guard has power).
Small on purpose (48 + 48 pairs at 512 tokens, a few optimiser steps) to fit `make test`;
benchmarks/blind_probe.py runs the full-size probe.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from longrm.bench.construct import build_suite
from longrm.bench.pairs import Pair, item_pairs
from longrm.bench.probe import ProbeSettings, TrainedProbeControl, pair_item
from longrm.items import BEST_OF_N, Item

SEED_TRAIN, SEED_TEST = 303, 404
PER_CELL = 12  # 4 families x 12 = 48 pairs per suite
Z = 2.6
SETTINGS = ProbeSettings(epochs=2.0)


def _pairs(tokenizer: Any, seed: int) -> list[Pair]:
    items = build_suite(
        tokenizer, lengths="512", items_per_cell=PER_CELL, formats=("pairwise",), seed=seed
    )
    return item_pairs(items).pairs


def _leaky(pairs: list[Pair]) -> list[Pair]:
    """Return the pairs with a tell-tale word ending every better candidate."""
    out = []
    for pair in pairs:
        cands = list(pair.item.candidates)
        cands[pair.better] += " Surely."
        out.append(dataclasses.replace(pair, item=dataclasses.replace(pair.item, candidates=cands)))
    return out


def _accuracy(outcomes: dict[str, float]) -> float:
    return sum(outcomes.values()) / len(outcomes)


def test_a_probe_item_keeps_the_question_and_candidates_but_not_the_context() -> None:
    item = Item(
        id=1,
        task="t",
        subtask="",
        tasktype=BEST_OF_N,
        subtype="3",
        length_bucket="512",
        length=10,
        prompt=[{"role": "user", "content": "<context>\nsecret\n</context>\n\nQuestion: q?"}],
        question="q?",
        candidates=["best", "mid", "worst"],
        candidate_scores=[1.0, 0.5, 0.0],
    )
    blind = pair_item(Pair(item, 0, 2))
    assert blind.is_pairwise and blind.candidates == ["best", "worst"]
    assert "secret" not in blind.prompt[0]["content"] and "q?" in blind.prompt[0]["content"]
    assert blind.key == "t:1#1>3"


@pytest.mark.integration
def test_trained_blind_probe_stays_near_chance_and_finds_a_planted_word(
    tokenizer: Any, tmp_path: Path
) -> None:
    train, test = _pairs(tokenizer, SEED_TRAIN), _pairs(tokenizer, SEED_TEST)
    band = Z * math.sqrt(0.25 / len(test))

    clean = TrainedProbeControl(tmp_path / "clean", SETTINGS, train_pairs=train)
    accuracy = _accuracy(clean.outcomes(test))
    assert abs(accuracy - 0.5) <= band, f"blind probe {accuracy:.3f} on {len(test)} pairs"

    leaky = TrainedProbeControl(tmp_path / "leaky", SETTINGS, train_pairs=_leaky(train))
    assert _accuracy(leaky.outcomes(_leaky(test))) > 0.5 + band
