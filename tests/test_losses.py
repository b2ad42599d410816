"""Preference losses against values computed by hand (and SimPO against TRL's own)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from longrm.train.losses import bradley_terry_loss, dpo_loss, logo_loss, simpo_loss


def _nls(x: float) -> float:
    """-log sigmoid(x)."""
    return math.log1p(math.exp(-x))


def test_logo_averages_v_negatives_with_margin_and_nll() -> None:
    # chosen mean log-prob -1.0; two negatives -2.0 and -4.0 (mean -3.0)
    out = logo_loss(
        torch.tensor([-1.0]), torch.tensor([[-2.0, -4.0]]), beta=2.5, gamma=0.5, nll_weight=0.05
    )
    # -log sigmoid(2.5 * 2.0 - 0.5) + 0.05 * 1.0
    assert out.loss.item() == pytest.approx(_nls(4.5) + 0.05, abs=1e-6)
    assert out.margin.item() == pytest.approx(2.0)
    assert out.accuracy.item() == 1.0


def test_logo_batch_mean_and_accuracy_against_the_best_negative() -> None:
    chosen = torch.tensor([-1.0, -3.0])
    rejected = torch.tensor([[-2.0, -4.0], [-2.5, -5.0]])  # row 2: mean -3.75, but -2.5 beats it
    out = logo_loss(chosen, rejected, beta=1.0, gamma=0.0, nll_weight=0.0)
    expected = (_nls(2.0) + _nls(0.75)) / 2
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.accuracy.item() == 0.5  # the chosen must beat every negative


def test_logo_nll_term_pulls_the_chosen_up() -> None:
    chosen = torch.tensor([-2.0], requires_grad=True)
    rejected = torch.tensor([[-2.0]])
    logo_loss(chosen, rejected, beta=0.0, gamma=0.0, nll_weight=1.0).loss.backward()
    # with beta 0 the preference term is constant: the gradient is the NLL's, -1
    assert chosen.grad is not None and chosen.grad.item() == pytest.approx(-1.0)


def test_simpo_is_v1_without_nll_and_matches_trl() -> None:
    chosen = torch.tensor([-0.7, -1.9, -0.2])
    rejected = torch.tensor([[-1.5], [-1.0], [-0.4]])
    out = simpo_loss(chosen, rejected, beta=2.0, gamma=1.0)
    by_hand = (
        sum(
            _nls(2.0 * (c - r) - 1.0)
            for c, r in zip([-0.7, -1.9, -0.2], [-1.5, -1.0, -0.4], strict=True)
        )
        / 3
    )
    assert out.loss.item() == pytest.approx(by_hand, abs=1e-6)
    cpo = pytest.importorskip("trl.experimental.cpo")
    fake = SimpleNamespace(
        alpha=0.0,
        loss_type="simpo",
        simpo_gamma=1.0,
        beta=2.0,
        label_smoothing=0.0,
        accelerator=SimpleNamespace(device="cpu"),
    )
    losses, _, _ = cpo.CPOTrainer.cpo_loss(fake, chosen, rejected[:, 0])
    assert out.loss.item() == pytest.approx(losses.mean().item(), abs=1e-6)
    with pytest.raises(ValueError, match="one rejected"):
        simpo_loss(chosen, torch.zeros(3, 2))


def test_dpo_uses_reference_ratios_and_averages_negatives() -> None:
    out = dpo_loss(
        torch.tensor([-10.0]),
        torch.tensor([[-12.0, -20.0]]),
        torch.tensor([-11.0]),
        torch.tensor([[-11.0, -16.0]]),
        beta=0.1,
    )
    # win ratio +1; lose ratios -1 and -4 (mean -2.5); diff 3.5
    assert out.loss.item() == pytest.approx(_nls(0.35), abs=1e-6)
    assert out.margin.item() == pytest.approx(3.5)


def test_bradley_terry_against_mean_of_negatives() -> None:
    out = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([[0.0, -2.0], [1.0, 1.0]]))
    assert out.loss.item() == pytest.approx((_nls(2.0) + _nls(-1.0)) / 2, abs=1e-6)
    assert out.accuracy.item() == 0.5


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\(B,\) and rejected \(B, V\)"):
        logo_loss(torch.zeros(2), torch.zeros(3, 2))
