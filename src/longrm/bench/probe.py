"""The trained blind probe: a reward model fine-tuned without the context, to find candidate cues.

Fixed heuristics and bag-of-words classifiers only find the cues they were written to find. A
fine-tuned language model with a scalar head finds any cue its pretraining lets it read (an
unnatural value, a phrasing that goes with a tier, a question the wrong answer echoes). So the
probe trains the default model with the DisRM recipe on pairs whose context was emptied
(instruction, question and candidates only) and scores pairs it never saw the same way: on a
benchmark whose labels need the context, it must stay at chance.

The probe is trained either on another benchmark's pairs (two seeds of a built suite: the
strongest test, since nothing of the test items was seen) or cross-fitted over the audited
benchmark's items (k folds, an item's pairs always in one fold).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from longrm.bench.controls import ControlUnavailable, ModelControl, fold_of_groups
from longrm.bench.pairs import Pair
from longrm.evaluate.ablation import ablate_context
from longrm.items import PAIRWISE, Item, write_items

PROBE_NAME = "trained blind probe"


@dataclass(frozen=True)
class ProbeSettings:
    """How the probe is trained: the DisRM recipe measured to learn on the default model.

    `epochs` passes over the training pairs, `pairs_per_step` pairs per optimiser step, LoRA
    rank/alpha and learning rate as `longrm train disrm` uses them on a small model;
    `max_length` caps a blind prompt plus candidate (they are short without the context).
    """

    model: str = "default"
    epochs: float = 2.0
    pairs_per_step: int = 4
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    max_length: int = 512
    seed: int = 0


def pair_item(pair: Pair) -> Item:
    """Return a pair as a pairwise item (better candidate first) with its context emptied."""
    item = pair.item
    if item.is_pairwise:
        base = item
    else:
        base = dataclasses.replace(
            item,
            id=f"{item.id}#{pair.better + 1}>{pair.worse + 1}",
            tasktype=PAIRWISE,
            subtype="",
            candidates=[item.candidates[pair.better], item.candidates[pair.worse]],
            candidate_scores=None,
        )
    return ablate_context([base], "empty")[0]


def train_probe(
    pairs: Sequence[Pair],
    out: Path,
    settings: ProbeSettings = ProbeSettings(),
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Train the blind probe on `pairs` (context emptied) and return its model folder.

    A finished probe in `out` (its `probe.json` names the same settings and pairs) is reused.
    """
    from longrm.train.config import DisrmConfig
    from longrm.train.disrm import train_disrm

    if not pairs:
        raise ControlUnavailable("the trained probe needs pairs to train on; none were given")
    out = Path(out)
    model_dir, record_path = out / "model", out / "probe.json"
    identity = {"settings": asdict(settings), "pairs": sorted(p.key for p in pairs)}
    if record_path.exists() and json.loads(record_path.read_text("utf-8")).get("identity") == (
        identity
    ):
        log(f"reusing the blind probe in {model_dir}")
        return model_dir
    data = out / "blind-train"
    for stale in (data, model_dir):
        if stale.exists():
            shutil.rmtree(stale)
    write_items([pair_item(p) for p in pairs], data)
    config = DisrmConfig(
        model=settings.model,
        data=str(data),
        output_dir=str(model_dir),
        max_length=settings.max_length,
        lora=True,
        lora_r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=settings.pairs_per_step,
        num_train_epochs=settings.epochs,
        activation_checkpointing=False,
        seed=settings.seed,
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
    )
    log(f"training the blind probe on {len(pairs)} pairs, {settings.epochs:g} epoch(s)")
    record = train_disrm(config)
    summary = {k: record[k] for k in ("steps", "seconds", "train_loss") if k in record}
    record_path.write_text(
        json.dumps({"identity": identity, "train": summary}, indent=2), encoding="utf-8"
    )
    log(f"blind probe trained: {json.dumps(summary)}")
    return model_dir


def _identity(pair: Pair) -> tuple[str, ...]:
    """Return what the probe sees of a pair: its question and its two candidates."""
    return (pair.item.question, *pair.texts)


@dataclass
class TrainedProbeControl:
    """The trained blind probe as an audit control (see the module docstring).

    With `train_pairs` it is trained once on them and judges every audited pair; without, it is
    cross-fitted: for each of `folds` folds of items, trained on the other folds and judging that
    one. `work_dir` holds the probes (one per fold), reused when rerun with the same pairs.
    """

    work_dir: Path
    settings: ProbeSettings = ProbeSettings()
    train_pairs: Sequence[Pair] | None = None
    folds: int = 2
    seed: int = 0
    log: Callable[[str], None] = lambda _: None
    name: str = PROBE_NAME
    blind: bool = True
    notes: list[str] = field(default_factory=list)

    def outcomes(self, pairs: Sequence[Pair]) -> dict[str, float]:
        """Return each pair's outcome from a probe that never saw its item."""
        self.notes.clear()
        if self.train_pairs is not None:
            seen = {_identity(p) for p in self.train_pairs}
            shared = [p.key for p in pairs if _identity(p) in seen]
            if shared:
                raise ControlUnavailable(
                    f"the probe's training benchmark holds {len(shared)} of the audited pairs "
                    f"(e.g. {shared[0]}); give it another seed's suite"
                )
            self.notes.append(f"trained on {len(self.train_pairs)} pairs of another benchmark")
            return self._judge(self.work_dir / "probe", self.train_pairs, pairs)
        fold = fold_of_groups([p.group for p in pairs], self.folds, self.seed)
        k = int(fold.max()) + 1
        out: dict[str, float] = {}
        for f in range(k):
            train = [p for p, g in zip(pairs, fold, strict=True) if g != f]
            test = [p for p, g in zip(pairs, fold, strict=True) if g == f]
            out.update(self._judge(self.work_dir / f"probe-fold{f}", train, test))
        self.notes.append(f"cross-fitted over {k} folds of items")
        return out

    def _judge(self, out: Path, train: Sequence[Pair], test: Sequence[Pair]) -> dict[str, float]:
        from longrm.rm.load import RewardModelOptions, load_reward_model

        model_dir = train_probe(train, out, self.settings, self.log)
        rm = load_reward_model(str(model_dir), RewardModelOptions(kind="scalar"))
        try:
            judge = ModelControl(self.name, rm, "empty")
            result = judge.outcomes(test)
            self.notes.extend(judge.notes)
            return result
        finally:
            rm.close()
