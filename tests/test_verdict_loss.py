"""Stage II on verdict tokens only: the mask covers the verdicts and nothing else, the summed
log-probability equals a hand computation, the explanation cannot move it, and the trainer runs
with it on verdict-only and verdict-first judgments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from longrm.cli import app
from longrm.items import ItemError
from longrm.train.align import verdict_scored
from longrm.train.config import AlignConfig, parse_config
from longrm.train.shared_prefix import pack, response_logps
from longrm.train.stages import STAGES
from longrm.train.tokens import PromptResponses, tokenize_judgments
from longrm.train.verdict_spans import verdict_token_mask

CHAT = [{"role": "user", "content": "Which answer does the context support, A or B?"}]
FAST = ["--learning_rate", "1e-2", "--warmup_steps", "0", "--save_strategy", "no", "--seed", "0"]


def _spelled(tokenizer: Any, ids: list[int], mask: list[bool]) -> str:
    return "".join(tokenizer.decode([t]) for t, m in zip(ids, mask, strict=True) if m)


def test_mask_marks_every_verdict_and_nothing_else(tokenizer: Any) -> None:
    ids = tokenize_judgments(
        tokenizer, CHAT, ["[[B]]\nAnswer A misreads the count.\n[[B]]", "[[C>A>B]]", "No verdict."]
    )
    first, ranking, none = (verdict_token_mask(tokenizer, r) for r in ids.responses)
    assert _spelled(tokenizer, ids.responses[0], first) == "[[B]][[B]]"
    assert _spelled(tokenizer, ids.responses[1], ranking) == "[[C>A>B]]"
    assert not any(none)
    # the closing tokens of the turn are not verdict tokens
    assert first[-1] is False and ranking[-1] is False


@pytest.fixture(scope="module")
def model(tiny_causal: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_causal).eval()


def _verdict_ids(tokenizer: Any, responses: list[str]) -> PromptResponses:
    return verdict_scored(tokenizer, tokenize_judgments(tokenizer, CHAT, responses), "t:1")


@pytest.mark.parametrize("shared", [True, False])
def test_summed_verdict_logps_match_a_plain_forward(
    tokenizer: Any, model: Any, shared: bool
) -> None:
    ids = _verdict_ids(tokenizer, ["[[A]]\nThe context gives 5.\n[[A]]", "[[B]]\nStyle.\n[[B]]"])
    assert ids.scored is not None
    got = response_logps(model, [ids], shared_prefix=shared, pad_id=tokenizer.pad_token_id)
    for k, (response, flags) in enumerate(zip(ids.responses, ids.scored, strict=True)):
        full = torch.tensor([ids.prompt + response])
        with torch.no_grad():
            logps = torch.log_softmax(model(full).logits[0].float(), dim=-1)
        start = len(ids.prompt)
        by_hand = sum(
            logps[start + i - 1, t].item()
            for i, (t, f) in enumerate(zip(response, flags, strict=True))
            if f
        )
        assert got.counts[0, k].item() == sum(flags) == 6  # "[[", "A", "]]" twice
        assert got.sums[0, k].item() == pytest.approx(by_hand, abs=1e-4)
    # the packed targets (the loss's labels) are exactly the verdict tokens
    packed = pack(ids)
    assert sorted(t for _, t, _ in packed.targets()) == sorted(
        t
        for r, fl in zip(ids.responses, ids.scored, strict=True)
        for t, f in zip(r, fl, strict=True)
        if f
    )


def test_the_explanation_cannot_move_a_verdict_first_score(tokenizer: Any, model: Any) -> None:
    """Only the verdict is read: another explanation after it leaves the score unchanged, where
    the score over all tokens changes."""
    texts = ["[[A]]\nThe context says the vault code is K001.", "[[A]]\nIt reads well."]
    verdict = [_verdict_ids(tokenizer, [t]) for t in texts]
    every = [tokenize_judgments(tokenizer, CHAT, [t]) for t in texts]
    pad = tokenizer.pad_token_id
    v = [response_logps(model, [x], pad_id=pad).sums.item() for x in verdict]
    a = [response_logps(model, [x], pad_id=pad).sums.item() for x in every]
    assert v[0] == pytest.approx(v[1], abs=1e-5)
    assert abs(a[0] - a[1]) > 1e-2


def _embedding_grad(model: Any, ids: PromptResponses, pad_id: int) -> torch.Tensor:
    """Return d(summed response log-probs) / d(input embeddings), (1, L, hidden)."""
    grads: list[torch.Tensor] = []

    def keep(_module: Any, _inputs: Any, out: torch.Tensor) -> None:
        out.register_hook(grads.append)

    hook = model.get_input_embeddings().register_forward_hook(keep)
    try:
        response_logps(model, [ids], pad_id=pad_id).sums.sum().backward()
    finally:
        hook.remove()
        model.zero_grad()
    return grads[0]


def test_gradient_reaches_only_what_the_verdict_reads(tokenizer: Any, model: Any) -> None:
    """Embeddings of the explanation after the verdict get no gradient under the verdict score
    (the labels outside the span are off), and do under the whole-judgment score."""
    ids = tokenize_judgments(tokenizer, CHAT, ["[[B]]\nThe context never mentions it."])
    start = len(ids.prompt) + 3  # past "[[", "B", "]]"
    verdict = _embedding_grad(model, verdict_scored(tokenizer, ids, "t:1"), tokenizer.pad_token_id)
    every = _embedding_grad(model, ids, tokenizer.pad_token_id)
    assert verdict[0, start:].abs().sum().item() == 0.0
    assert verdict[0, :start].abs().sum().item() > 0.0
    assert every[0, start:].abs().sum().item() > 0.0


def test_a_judgment_without_a_verdict_is_an_error_at_its_source(tokenizer: Any) -> None:
    ids = tokenize_judgments(tokenizer, CHAT, ["[[A]]", "[Analysis] fine. [Score: 3]"])
    with pytest.raises(
        ItemError, match=r"rows.jsonl:7: field 'rejects'.*no \[\[\.\.\.\]\] verdict"
    ):
        verdict_scored(tokenizer, ids, "rows.jsonl:7")


def test_config_fields() -> None:
    config = parse_config(AlignConfig, ["--data", "d", "--out", "o"])
    assert (config.score_tokens, config.length_normalize, config.judgment_layout) == (
        "all",
        True,
        "verdict_first",
    )
    config = parse_config(
        AlignConfig,
        ["--data", "d", "--out", "o", "--score_tokens", "verdict", "--no_length_normalize"],
    )
    assert (config.score_tokens, config.length_normalize) == ("verdict", False)


@pytest.fixture(scope="module")
def pair_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bench = tmp_path_factory.mktemp("bench")
    built = CliRunner().invoke(app, [
        "bench", "build", "--out", str(bench), "--lengths", "512", "--formats", "pairwise",
        "--tasks", "single_fact,citation", "--seed", "11",
    ])  # fmt: skip
    assert built.exit_code == 0, built.output
    return bench


@pytest.mark.parametrize(
    "layout", [["--judgment_layout", "verdict_only", "--negatives", "1"], ["--negatives", "2"]]
)
def test_align_trains_on_summed_verdict_tokens(
    tiny_causal: str, pair_bench: Path, tmp_path: Path, layout: list[str]
) -> None:
    cls, run = STAGES["align"]
    args = ["--model", tiny_causal, "--data", str(pair_bench), "--out", str(tmp_path),
            "--score_tokens", "verdict", "--no_length_normalize", "--max_steps", "8",
            *layout, *FAST]  # fmt: skip
    record: dict[str, Any] = run(parse_config(cls, args))
    assert record["config"]["score_tokens"] == "verdict"
    assert record["config"]["length_normalize"] is False
    assert record["data"]["gold_best_slot"] == {"A": 2, "B": 2}
    assert record["data"]["row_order"]["split_groups"] == 0
    assert record["final_loss"] < record["first_loss"]
    assert json.loads((tmp_path / "longrm-train.json").read_text())["steps"] == 8
