"""The trainers by name, each with its config class (what `longrm train NAME` runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from longrm.train.config import AlignConfig, DisrmConfig, SftConfig, TrainConfig


def _sft(config: Any) -> dict[str, Any]:
    from longrm.train.sft import train_sft

    return train_sft(config)


def _align(config: Any) -> dict[str, Any]:
    from longrm.train.align import train_align

    return train_align(config)


def _disrm(config: Any) -> dict[str, Any]:
    from longrm.train.disrm import train_disrm

    return train_disrm(config)


STAGES: dict[str, tuple[type[TrainConfig], Callable[[Any], dict[str, Any]]]] = {
    "sft": (SftConfig, _sft),
    "align": (AlignConfig, _align),
    "disrm": (DisrmConfig, _disrm),
}
