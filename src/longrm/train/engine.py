"""What the three trainers share: transformers' Trainer counting real tokens, a progress bar
with the loss and tokens/s, the row order (a pair's display orders in one step, an optional
length curriculum), resuming, and saving a model with its record.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from longrm.train.config import TrainConfig
from longrm.train.data import Loaded
from longrm.train.features import FitStats
from longrm.train.model_io import file_digest, merge_saved_adapter, read_record, write_record
from longrm.train.steps import StepSampler
from longrm.train.verdict_spans import best_slot_counts


class LongrmTrainer(Trainer):
    """A Trainer whose subclasses report tokens and batch metrics from `compute_loss`, and
    whose rows come in `row_order` when one is given (else transformers' random sampler)."""

    def __init__(self, *args: Any, row_order: StepSampler | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row_order = row_order
        self._tokens = 0
        self._tokens_total = 0
        self._since = time.perf_counter()
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self.remove_callback(ProgressCallback)
        self.add_callback(LossRateProgress())

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        own = train_dataset is None or train_dataset is self.train_dataset
        if self.row_order is not None and own:
            return self.row_order
        return super()._get_train_sampler(train_dataset)

    def count_tokens(self, n: int) -> None:
        """Count tokens the model read in this step (prompt once when shared, padding not)."""
        self._tokens += int(n)

    def note(self, **values: torch.Tensor | float) -> None:
        """Keep batch metrics (preference accuracy, margin) until the next log line."""
        if self.model is None or not self.model.training:
            return
        for key, value in values.items():
            self._metrics[key].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add tokens/s (this process, since the last log) and the averaged batch metrics."""
        now = time.perf_counter()
        if "loss" in logs:
            logs["tokens_per_s"] = round(self._tokens / max(now - self._since, 1e-9), 1)
            self._tokens_total += self._tokens
            logs["tokens"] = self._tokens_total
            self._tokens, self._since = 0, now
            for key, values in self._metrics.items():
                logs[key] = round(sum(values) / len(values), 4)
            self._metrics.clear()
        super().log(logs, start_time)


class LossRateProgress(ProgressCallback):
    """The step bar, with the latest loss and tokens/s beside it instead of a dict per line."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        shown = {k: logs[k] for k in ("loss", "tokens_per_s", "accuracy") if k in logs}
        if shown:
            self.training_bar.set_postfix(shown, refresh=False)


def stage_record(
    stage: str,
    config: TrainConfig,
    base: str,
    formats: dict[str, int],
    stats: FitStats,
    **extra: Any,
) -> dict[str, Any]:
    """Return what a run records before training: the stage, the model it starts from (with
    that model's own record, so stages chain), and the data: path, sha256, formats, fitting.
    """
    data = str(config.data)
    return {
        "stage": stage,
        **extra,
        "started_from": {"model": base, "record": read_record(base)},
        "data": {"path": data, "sha256": file_digest(data), "formats": formats, **stats.as_dict()},
    }


def rows_per_step(config: TrainConfig) -> int:
    """Return the rows one optimiser step reads over all processes."""
    return (
        config.per_device_train_batch_size
        * config.gradient_accumulation_steps
        * max(config.world_size, 1)
    )


def row_order(config: TrainConfig, groups: list[str], tokens: list[int]) -> StepSampler | None:
    """Return the sampler the config asks for: display orders of one item in one step
    (`order_pairs`, when rows share groups), a length curriculum, or None (shuffled rows).
    """
    shared = any(n > 1 for name, n in Counter(groups).items() if name)
    paired = config.order_pairs and shared
    if not paired and config.curriculum == "none":
        return None
    return StepSampler(
        groups,
        tokens,
        rows_per_step(config),
        seed=config.seed,
        curriculum=config.curriculum,
        keep_groups=config.order_pairs,
    )


def checkpoint_to_resume(config: TrainConfig) -> str | None:
    """Return the newest checkpoint in the output folder when resuming, else None."""
    if config.resume_from_checkpoint:
        return str(config.resume_from_checkpoint)
    out = Path(str(config.output_dir))
    if not config.resume or not out.is_dir():
        return None
    return get_last_checkpoint(str(out))


def train_and_save(
    trainer: LongrmTrainer,
    config: TrainConfig,
    record: dict[str, Any],
    base: str,
    scalar: bool = False,
) -> dict[str, Any]:
    """Train (resuming when asked), save the final model into the output folder with its
    record, and return the record. `base` is the model training started from (LoRA merges
    into it); `scalar` says it has a score head.
    """
    start = time.perf_counter()
    resumed = checkpoint_to_resume(config)
    result = trainer.train(resume_from_checkpoint=resumed)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out = Path(str(config.output_dir))
    full = {
        **record,
        "resumed_from": resumed,
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "tokens": trainer._tokens_total + trainer._tokens,
        "seconds": round(time.perf_counter() - start, 1),
        "log": [h for h in trainer.state.log_history if "loss" in h],
        "config": {k: v for k, v in config.to_dict().items() if not k.startswith("_")},
    }
    full["tokens"] = int(
        trainer.accelerator.reduce(torch.tensor(full["tokens"], device=trainer.args.device), "sum")
    )
    trainer.save_model(str(out))  # every process takes part: ZeRO-3 and FSDP gather weights
    if trainer.is_world_process_zero():
        if config.lora:
            pad_id = getattr(trainer.processing_class, "pad_token_id", None)
            merge_saved_adapter(out, base, scalar, pad_id)
        write_record(out, full)
    trainer.accelerator.wait_for_everyone()
    return full


def train_stage(
    stage: str,
    config: TrainConfig,
    base: str,
    model: Any,
    tokenizer: Any,
    loaded: Loaded,
    featurize: Callable[[list[Any], FitStats], list[Any]],
    trainer_class: type[LongrmTrainer],
    data_collator: Callable[[list[Any]], dict[str, Any]],
    *,
    tokens: Callable[[Any], int],
    scalar: bool = False,
    trainer_kwargs: dict[str, Any] | None = None,
    record_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit the loaded examples into features, train a `trainer_class` on them in the row order
    the config asks for, save the model, and return the run's record. `featurize(examples,
    stats)` returns the features, counting what it truncated or skipped; `tokens(feature)` is a
    feature's length (what the curriculum orders by); the rest is as in `stage_record` and
    `train_and_save`. Judge stages also record which slot the gold verdicts put first.
    """
    stats = FitStats(skipped=[str(e) for e in loaded.skipped])
    features = featurize(loaded.examples, stats)
    kept = [loaded.examples[i] for i in stats.kept]
    order = row_order(config, [ex.group for ex in kept], [tokens(f) for f in features])
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=features,
        data_collator=data_collator,
        processing_class=tokenizer,
        row_order=order,
        **(trainer_kwargs or {}),
    )
    record = stage_record(stage, config, base, loaded.formats, stats, **(record_extra or {}))
    if loaded.left_out:
        record["data"]["left_out"] = dict(loaded.left_out)
    if not scalar:
        targets = [str(getattr(ex, "target", None) or getattr(ex, "chosen", "")) for ex in kept]
        record["data"]["gold_best_slot"] = best_slot_counts(targets)
    record["data"]["row_order"] = (
        order.plan().as_dict()
        if order is not None
        else {"rows_per_step": rows_per_step(config), "order": "shuffled rows"}
    )
    return train_and_save(trainer, config, record, base, scalar)
