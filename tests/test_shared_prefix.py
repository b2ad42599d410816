"""Shared-prefix packing scores every response exactly as a separate causal sequence would."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from longrm.train.shared_prefix import (
    check_parallel_support,
    dense_mask,
    flex_block_mask,
    pack,
    response_logps,
    response_rewards,
    score_head,
    segment_ids,
)
from longrm.train.tokens import PromptResponses


def _load(path: str, impl: str = "sdpa") -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=impl, dtype=torch.float32)


@pytest.fixture(scope="module")
def model(tiny_causal: str) -> torch.nn.Module:
    return _load(tiny_causal).eval()


@pytest.fixture(scope="module")
def pad_id(tokenizer) -> int:
    return int(tokenizer.pad_token_id or tokenizer.eos_token_id)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _batch(tokenizer, n_responses: int) -> list[PromptResponses]:
    """Two examples whose prompts and responses differ in length, so both modes pad."""
    prompts = ["The report says revenue grew by a tenth in the third quarter.", "Is it true?"]
    answers = [
        ["Yes, by ten percent.", "No.", "The report does not say so, as far as I can tell."],
        ["It is true, the passage states it plainly and twice.", "False", "Unclear."],
    ]
    return [
        PromptResponses(_ids(tokenizer, p), [_ids(tokenizer, a) for a in ans[:n_responses]])
        for p, ans in zip(prompts, answers, strict=True)
    ]


def _manual_sum(model: torch.nn.Module, prompt: list[int], response: list[int]) -> float:
    """Sum of log p(response | prompt) from one plain unpadded forward pass."""
    ids = torch.tensor([prompt + response])
    logps = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(float(logps[len(prompt) + j - 1, t]) for j, t in enumerate(response))


def test_pack_hand_checked_mask_and_positions() -> None:
    packed = pack(PromptResponses([11, 12], [[21, 22], [31]]))
    assert packed.input_ids == [11, 12, 21, 22, 31]
    assert packed.position_ids == [0, 1, 2, 3, 2]
    assert packed.spans == [(2, 4), (4, 5)]
    # 21 and 31 are both predicted by the prompt's last position (1); 22 by 21's position (2).
    assert packed.targets() == [(1, 21, 0), (2, 22, 0), (1, 31, 1)]
    expected = [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],  # response 1 sees the prompt, not response 0
    ]
    assert dense_mask(segment_ids([packed])).int()[0, 0].tolist() == expected


def test_padding_is_masked_and_attends_only_to_itself() -> None:
    long, short = pack(PromptResponses([1, 2], [[3, 4], [5]])), pack(PromptResponses([1], [[2]]))
    mask = dense_mask(segment_ids([long, short])).int()[1, 0]
    expected = [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],  # padding rows: only themselves (a fully masked row gives NaN)
        [0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1],
    ]
    assert mask.tolist() == expected


@pytest.mark.parametrize("n_responses", [2, 3])
def test_shared_prefix_matches_duplicated_baseline(model, tokenizer, pad_id, n_responses) -> None:
    batch = _batch(tokenizer, n_responses)
    with torch.no_grad():
        shared = response_logps(model, batch, pad_id=pad_id)
        separate = response_logps(model, batch, pad_id=pad_id, shared_prefix=False)
        manual = [[_manual_sum(model, ex.prompt, r) for r in ex.responses] for ex in batch]
    counts = [[len(r) for r in ex.responses] for ex in batch]
    assert shared.counts.tolist() == counts == separate.counts.tolist()
    # sums reach ~150 nats, where one float32 step is ~1.5e-5: hence the rtol
    torch.testing.assert_close(shared.sums, separate.sums, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(shared.means, separate.means, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.sums, torch.tensor(manual), atol=1e-4, rtol=0)


def _grads(model, batch, pad_id, shared_prefix: bool) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    means = response_logps(model, batch, pad_id=pad_id, shared_prefix=shared_prefix).means
    chosen, rejected = means[:, 0], means[:, 1:]
    loss = -torch.nn.functional.logsigmoid(2.5 * (chosen - rejected.mean(-1)) - 0.5) - 0.05 * chosen
    loss.mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_match_baseline(tiny_causal, tokenizer, pad_id, checkpointing) -> None:
    model = _load(tiny_causal)
    if checkpointing:
        model.activation_checkpointing_enable()
        assert model.is_activation_checkpointing
    model.train()
    batch = _batch(tokenizer, 3)
    shared = _grads(model, batch, pad_id, shared_prefix=True)
    separate = _grads(model, batch, pad_id, shared_prefix=False)
    assert shared.keys() == separate.keys() == {n for n, _ in model.named_parameters()}
    for name, grad in shared.items():
        torch.testing.assert_close(grad, separate[name], atol=1e-5, rtol=0, msg=name)
    assert any(float(g.abs().max()) > 0 for g in shared.values())


def test_eager_reads_the_float_mask(tiny_causal, model, tokenizer, pad_id) -> None:
    """Eager attention adds the mask to the scores, so it gets 0 / -inf, not booleans."""
    batch = _batch(tokenizer, 2)
    with torch.no_grad():
        sdpa = response_logps(model, batch, pad_id=pad_id)
        eager = response_logps(_load(tiny_causal, "eager").eval(), batch, pad_id=pad_id)
    torch.testing.assert_close(eager.sums, sdpa.sums, atol=1e-4, rtol=0)


def test_flex_block_mask_matches_dense_mask() -> None:
    """Kernel level: transformers' flex path compiles (slow on CPU) and trains only on GPU."""
    from torch.nn.attention.flex_attention import flex_attention

    packs = [
        pack(PromptResponses([1, 2, 3], [[4, 5], [6], [7, 8, 9]])),
        pack(PromptResponses([1], [[4], [6], [7]])),
    ]
    segments = segment_ids(packs)
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, segments.shape[1], 8) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "called without torch.compile()": fine at this size
        got = flex_attention(q, k, v, block_mask=flex_block_mask(segments))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask(segments))
    # padding rows differ by design only if a row were empty; none is, so all rows agree
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_mismatched_response_counts_raise(model, pad_id) -> None:
    batch = [PromptResponses([1, 2], [[3], [4]]), PromptResponses([1], [[3], [4], [5]])]
    with pytest.raises(ValueError, match="example 1 has 3 responses"):
        response_logps(model, batch, pad_id=pad_id)


def test_parallelism_refuses_shared_prefix() -> None:
    with pytest.raises(ValueError, match="--no-shared-prefix"):
        check_parallel_support(True, context_parallel=2, sequence_parallel=1)
    with pytest.raises(ValueError, match="Ulysses"):
        check_parallel_support(True, context_parallel=1, sequence_parallel=4)
    check_parallel_support(False, context_parallel=2, sequence_parallel=4)
    check_parallel_support(True, context_parallel=1, sequence_parallel=1)


# ---------------------------------------------------------------------------------------------
# Scalar rewards (DisRM): the head at each response's last token


def _load_scalar(path: str, impl: str = "sdpa") -> PreTrainedModel:
    return AutoModelForSequenceClassification.from_pretrained(
        path, attn_implementation=impl, dtype=torch.float32
    )


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_rewards_are_what_the_model_gives_each_sequence_alone(
    tiny_scalar, tokenizer, pad_id, impl
) -> None:
    model = _load_scalar(tiny_scalar, impl).eval()
    batch = _batch(tokenizer, 3)
    with torch.no_grad():
        shared = response_rewards(model, batch, pad_id=pad_id)
        separate = response_rewards(model, batch, pad_id=pad_id, shared_prefix=False)
        # what `longrm eval --kind scalar` reads: the model's own pooled output, one sequence
        alone = [
            [float(model(torch.tensor([ex.prompt + r])).logits[0, 0]) for r in ex.responses]
            for ex in batch
        ]
    assert shared.shape == (2, 3)
    torch.testing.assert_close(shared, torch.tensor(alone), atol=1e-5, rtol=0)
    torch.testing.assert_close(separate, torch.tensor(alone), atol=1e-5, rtol=0)
    assert len({round(float(v), 4) for v in shared.flatten()}) == 6  # not one value read 6 times


def test_packed_reward_gradients_match_through_lora(tiny_scalar, tokenizer, pad_id) -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type=TaskType.SEQ_CLS)
    model = get_peft_model(_load_scalar(tiny_scalar), lora).train()
    assert score_head(model) is model.get_base_model().score
    batch = _batch(tokenizer, 2)

    def grads(shared: bool) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        rewards = response_rewards(model, batch, pad_id=pad_id, shared_prefix=shared)
        (-torch.nn.functional.logsigmoid(rewards[:, 0] - rewards[:, 1])).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    shared, separate = grads(True), grads(False)
    assert shared.keys() == separate.keys()
    assert any("lora_" in n for n in shared) and any("score" in n for n in shared)
    for name, grad in shared.items():
        torch.testing.assert_close(grad, separate[name], atol=1e-5, rtol=0, msg=name)
    assert any(float(g.abs().max()) > 0 for g in shared.values())


def test_rewards_need_a_score_head(model, pad_id) -> None:
    with pytest.raises(ValueError, match="no `score` head"):
        response_rewards(model, [PromptResponses([1, 2], [[3], [4]])], pad_id=pad_id)
