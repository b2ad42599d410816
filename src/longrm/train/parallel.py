"""Which long-sequence parallelism a run asks for, and which trainers can run under it.

Accelerate's context parallelism (`cp_size`) and DeepSpeed Ulysses (`sp_size`) split each
sequence across GPUs. They take plain causal masks only, so the block mask of a packed
prompt + responses row cannot go through them; and transformers' Trainer splits only the
`input_ids`, `labels` and `position_ids` tensors of a batch, which Stage II and DisRM batches
(whole preference rows) do not carry. So Stage I (SFT) runs under them; Stage II and DisRM
run under DDP, ZeRO-2/3 or FSDP, with or without shared-prefix packing.
"""

from __future__ import annotations

import os
from typing import Any


def parallel_sizes(parallelism_config: Any = None) -> tuple[int, int]:
    """Return (cp_size, sp_size) from a ParallelismConfig (object or dict) or from the
    environment `accelerate launch` sets from its config file.
    """

    def read(name: str) -> int:
        value = None
        if isinstance(parallelism_config, dict):
            value = parallelism_config.get(name)
        elif parallelism_config is not None:
            value = getattr(parallelism_config, name, None)
        if value is None:
            value = os.environ.get(f"PARALLELISM_CONFIG_{name.upper()}", "1")
        return int(value)

    return read("cp_size"), read("sp_size")


def check_parallel_config(config: Any, stage: str) -> None:
    """Raise ValueError when `stage` ('sft', 'align', 'disrm') cannot run under the run's
    context or sequence parallelism; the message says what to run instead.
    """
    from longrm.train.shared_prefix import check_parallel_support

    cp, sp = parallel_sizes(getattr(config, "parallelism_config", None))
    if stage == "sft" or (cp <= 1 and sp <= 1):
        return
    shared = bool(getattr(config, "shared_prefix", False))
    check_parallel_support(shared, cp, sp)  # the packing's own reason comes first
    used = f"context parallelism (cp_size={cp})" if cp > 1 else f"Ulysses (sp_size={sp})"
    raise ValueError(
        f"train {stage} cannot run under {used}: the Trainer splits only input_ids, labels "
        f"and position_ids across GPUs, and {stage} batches are whole preference rows. Run "
        "it with DDP, ZeRO-2/3 or FSDP (configs/accelerate/zero2.yaml, zero3.yaml); context "
        "parallelism and Ulysses serve Stage I (train sft). See docs/scale-out.md"
    )
