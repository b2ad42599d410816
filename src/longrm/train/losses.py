"""Preference losses of Stage II and the discriminative RM, on per-response log-probs or rewards.

Each takes the chosen response's value (B,) and the V rejected responses' values (B, V) and
compares the chosen one with the *mean* over the rejected ones, as the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSSES = ("logo", "simpo", "dpo")


@dataclass(frozen=True)
class LossOutput:
    """The loss to minimise and what to log about the batch."""

    loss: torch.Tensor
    #: fraction of rows where the chosen value beats every rejected one
    accuracy: torch.Tensor
    #: mean of (chosen - mean of rejected) in the loss's own units
    margin: torch.Tensor


def _check(chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    if chosen.dim() != 1 or rejected.dim() != 2 or rejected.shape[0] != chosen.shape[0]:
        raise ValueError(
            f"expected chosen (B,) and rejected (B, V); got {tuple(chosen.shape)} and "
            f"{tuple(rejected.shape)}"
        )


def _accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return (chosen.detach() > rejected.detach().max(dim=1).values).float().mean()


def logo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    *,
    beta: float = 2.5,
    gamma: float = 0.5,
    nll_weight: float = 0.05,
) -> LossOutput:
    """LOGO / the paper's Stage II: reference-free, on mean per-token log-probs m(y).

    loss = -log sigmoid(beta * (m(win) - mean_j m(lose_j)) - gamma) + nll_weight * (-m(win)).
    SimPO is the case V = 1 without the NLL term.
    """
    _check(chosen, rejected)
    diff = chosen - rejected.mean(dim=1)
    pref = -F.logsigmoid(beta * diff - gamma)
    loss = (pref + nll_weight * (-chosen)).mean()
    return LossOutput(loss, _accuracy(chosen, rejected), diff.detach().mean())


def simpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, *, beta: float = 2.5, gamma: float = 0.5
) -> LossOutput:
    """SimPO: LOGO's objective against one rejected response, no NLL term."""
    if rejected.dim() == 2 and rejected.shape[1] != 1:
        raise ValueError(f"SimPO compares with one rejected response; got V = {rejected.shape[1]}")
    return logo_loss(chosen, rejected, beta=beta, gamma=gamma, nll_weight=0.0)


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """DPO on summed log-probs against a frozen reference, V rejected responses averaged.

    loss = -log sigmoid(beta * ((pi(win) - ref(win)) - mean_j (pi(lose_j) - ref(lose_j)))).
    """
    _check(chosen, rejected)
    _check(ref_chosen, ref_rejected)
    win = chosen - ref_chosen
    lose = rejected - ref_rejected
    diff = win - lose.mean(dim=1)
    loss = -F.logsigmoid(beta * diff).mean()
    return LossOutput(loss, _accuracy(win, lose), diff.detach().mean())


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> LossOutput:
    """The discriminative RM's loss: -log sigmoid(r(win) - mean_j r(lose_j))."""
    _check(chosen, rejected)
    diff = chosen - rejected.mean(dim=1)
    return LossOutput(-F.logsigmoid(diff).mean(), _accuracy(chosen, rejected), diff.detach().mean())
