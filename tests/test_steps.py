"""Row order: a pair's display orders in one optimiser step (sampler and the real Trainer), gold
A and B counted in the run record, and the length curriculum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from longrm.cli import app
from longrm.train.config import ConfigError, SftConfig, parse_config
from longrm.train.steps import StepSampler, length_bucket

FAST = ["--learning_rate", "1e-3", "--warmup_steps", "0", "--save_strategy", "no", "--seed", "0"]


def _steps(order: list[int], size: int) -> list[set[int]]:
    return [set(order[k : k + size]) for k in range(0, len(order), size)]


def _together(order: list[int], size: int, groups: list[list[int]]) -> bool:
    steps = _steps(order, size)
    return all(any(set(g) <= s for s in steps) for g in groups)


def test_pairs_share_a_step_every_epoch() -> None:
    names = ["p0", "p1", "p2", "p0", "p1", "p2", "p3", "p3"]  # orders need not be adjacent
    pairs = [[0, 3], [1, 4], [2, 5], [6, 7]]
    for size in (2, 4, 6):
        sampler = StepSampler(names, [100] * 8, size, seed=1)
        orders = [sampler.order(epoch) for epoch in range(4)]
        assert all(sorted(o) == list(range(8)) for o in orders)
        assert all(_together(o, size, pairs) for o in orders)
        assert len({tuple(o) for o in orders}) > 1  # reshuffled per epoch
        assert sampler.plan().as_dict() == {
            "rows_per_step": size,
            "groups": 4,
            "split_groups": 0,
            "curriculum": "none",
        }
    sampler = StepSampler(names, [100] * 8, 2, seed=1)
    sampler.set_epoch(3)
    assert list(sampler) == sampler.order(3) == StepSampler(names, [100] * 8, 2, seed=1).order(3)


def test_singletons_fill_around_pairs() -> None:
    names = ["a", "a", "", "b", "b", "", "c", "c", "", ""]
    sampler = StepSampler(names, [10] * 10, 4, seed=0)
    for epoch in range(5):
        order = sampler.order(epoch)
        assert sorted(order) == list(range(10))
        assert _together(order, 4, [[0, 1], [3, 4], [6, 7]])


def test_groups_larger_than_a_step_are_counted() -> None:
    one_row_steps = StepSampler(["a", "a", "b", "b"], [1] * 4, 1, seed=0)
    assert one_row_steps.plan().split_groups == 2
    assert _steps(one_row_steps.order(0), 1) == [{i} for i in one_row_steps.order(0)]
    bon4 = StepSampler(["q"] * 4 + ["p", "p"], [1] * 6, 2, seed=0)
    plan = bon4.plan()
    assert (plan.groups, plan.split_groups) == (2, 1)  # the 4 orders span two steps, the pair not
    unpaired = StepSampler(["a", "a", "b", "b"], [1] * 4, 2, seed=0, keep_groups=False)
    assert unpaired.plan().groups == 0


def test_length_curriculum_orders_buckets_short_first() -> None:
    tokens = [3000, 600, 1500, 700, 300, 2100, 650, 1100]
    sampler = StepSampler([""] * 8, tokens, 1, seed=4, curriculum="length")
    for epoch in range(3):
        order = sampler.order(epoch)
        buckets = [length_bucket(tokens[i]) for i in order]
        assert buckets == sorted(buckets)
        assert [order[0], set(order[1:4]), set(order[4:6]), set(order[6:])] == [
            4, {1, 3, 6}, {2, 7}, {0, 5},
        ]  # fmt: skip
    assert sampler.order(0) == StepSampler([""] * 8, tokens, 1, seed=4, curriculum="length").order(
        0
    )
    assert length_bucket(511) == 9 and length_bucket(512) == length_bucket(1023) == 10


def test_length_curriculum_keeps_pairs_together() -> None:
    names = [f"p{i // 2}" for i in range(8)]
    tokens = [900, 880, 300, 310, 2000, 2050, 500, 505]
    sampler = StepSampler(names, tokens, 2, seed=0, curriculum="length")
    order = sampler.order(0)
    assert _steps(order, 2) == [{2, 3}, {6, 7}, {0, 1}, {4, 5}]
    assert sampler.plan().split_groups == 0
    with pytest.raises(ValueError, match="unknown curriculum"):
        StepSampler(names, tokens, 2, seed=0, curriculum="sideways")


def test_config_flags_parse() -> None:
    base = ["--data", "d", "--out", "o"]
    config = parse_config(SftConfig, [*base, "--curriculum", "length", "--pairwise_only"])
    assert (config.curriculum, config.pairwise_only, config.order_pairs) == ("length", True, True)
    assert config.gradient_accumulation_steps == 2  # both orders of a pair at batch size 1
    config = parse_config(SftConfig, [*base, "--no_order_pairs", "--judgment_layout=verdict_only"])
    assert (config.order_pairs, config.judgment_layout) == (False, "verdict_only")
    with pytest.raises(SystemExit):
        parse_config(SftConfig, [*base, "--curriculum", "sideways"])


def test_config_file_sets_the_new_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("curriculum: length\npairwise_only: true\ndata: d\nout: o\n")
    config = parse_config(SftConfig, ["--config", str(path)])
    assert (config.curriculum, config.pairwise_only) == ("length", True)
    path.write_text("curriculum: length\ncurriculumm: none\n")
    with pytest.raises(ConfigError, match="curriculumm"):
        parse_config(SftConfig, ["--config", str(path)])


# ---------------------------------------------------------------------------------------------
# Through the real Trainer


@pytest.fixture(scope="module")
def mixed_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three families at 512 tokens, pairwise and Best-of-3 items."""
    bench = tmp_path_factory.mktemp("bench")
    built = CliRunner().invoke(app, [
        "bench", "build", "--out", str(bench), "--lengths", "512", "--formats", "pairwise,bon3",
        "--tasks", "single_fact,citation,counting", "--seed", "7",
    ])  # fmt: skip
    assert built.exit_code == 0, built.output
    return bench


def test_trainer_steps_hold_both_orders_and_record_gold_counts(
    tiny_causal: str, mixed_bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every optimiser step (batch 1, 2 accumulated) reads the two display orders of one pair;
    the record counts gold A and gold B rows and the Best-of-N items left out."""
    from transformers import AutoTokenizer

    import longrm.train.sft as sft
    from longrm.train.data import load_sft
    from longrm.train.features import FitStats

    seen: list[tuple[int, tuple[int, ...]]] = []

    class Recording(sft.SftTrainer):
        def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append((self.state.global_step, tuple(inputs["input_ids"][0].tolist())))
            return super().compute_loss(model, inputs, *args, **kwargs)

    monkeypatch.setattr(sft, "SftTrainer", Recording)
    args = ["--model", tiny_causal, "--data", str(mixed_bench), "--out", str(tmp_path),
            "--pairwise_only", "--max_steps", "6", *FAST]  # fmt: skip
    record = sft.train_sft(parse_config(SftConfig, args))

    data = record["data"]
    assert data["formats"] == {"benchmark-judgments": 6}  # 3 pairs x 2 orders
    assert data["left_out"] == {"best-of-n": 3}
    assert data["gold_best_slot"] == {"A": 3, "B": 3}
    assert data["row_order"] == {
        "rows_per_step": 2,
        "groups": 3,
        "split_groups": 0,
        "curriculum": "none",
    }
    assert json.loads((tmp_path / "longrm-train.json").read_text())["data"] == data

    config = parse_config(SftConfig, args)
    loaded = load_sft(str(mixed_bench), pairwise_only=True)
    features = sft.sft_features(
        config, AutoTokenizer.from_pretrained(tiny_causal), loaded.examples, FitStats()
    )
    group_of = {
        tuple(f["input_ids"]): ex.group for f, ex in zip(features, loaded.examples, strict=True)
    }
    by_step: dict[int, list[tuple[int, ...]]] = {}
    for step, ids in seen:
        by_step.setdefault(step, []).append(ids)
    assert len(by_step) == 6
    for rows in by_step.values():  # two rows a step: the two orders of one pair
        assert len(rows) == 2 and rows[0] != rows[1]
        assert group_of[rows[0]] == group_of[rows[1]]
