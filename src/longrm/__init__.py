"""longrm: long-context reward models: benchmark, evaluate, synthesize, train and serve.

The Python API (each name imported on first use, so `import longrm` stays light):

- `evaluate(bench, out, model, options, ...)`: judge a benchmark into a run folder
  (`longrm.evaluate.api.evaluate`; what `longrm eval` calls);
- `read_run(folder)`: a run folder read back, typed (settings, results, records);
- `load_items(path)`, `write_items(items, folder)`, `build_suite(tokenizer, ...)`:
  benchmarks;
- `load_reward_model(spec, options)`, `RewardModelOptions`: reward models;
- `compare_runs(a.predictions, b.predictions)`: a paired comparison of two runs;
- `SftConfig`/`train_sft`, `AlignConfig`/`train_align`, `DisrmConfig`/`train_disrm`:
  training.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "evaluate": "longrm.evaluate",  # the package, callable: see longrm/evaluate/__init__.py
    "EvalRun": "longrm.evaluate.api",
    "EvalError": "longrm.evaluate.errors",
    "read_run": "longrm.evaluate.run_files",
    "Run": "longrm.evaluate.run_files",
    "compare_runs": "longrm.evaluate.compare",
    "IntervalSettings": "longrm.evaluate.intervals",
    "load_items": "longrm.items",
    "write_items": "longrm.items",
    "build_suite": "longrm.bench.construct",
    "load_reward_model": "longrm.rm.load",
    "RewardModelOptions": "longrm.options",
    "SftConfig": "longrm.train.config",
    "AlignConfig": "longrm.train.config",
    "DisrmConfig": "longrm.train.config",
    "train_sft": "longrm.train.sft",
    "train_align": "longrm.train.align",
    "train_disrm": "longrm.train.disrm",
}
__all__ = [  # the names of _EXPORTS (a test checks), spelled out for linters and readers
    "AlignConfig",
    "DisrmConfig",
    "EvalError",
    "EvalRun",
    "IntervalSettings",
    "RewardModelOptions",
    "Run",
    "SftConfig",
    "__version__",
    "build_suite",
    "compare_runs",
    "evaluate",
    "load_items",
    "load_reward_model",
    "read_run",
    "train_align",
    "train_disrm",
    "train_sft",
    "write_items",
]

if TYPE_CHECKING:
    from longrm.bench.construct import build_suite
    from longrm.evaluate.api import EvalRun
    from longrm.evaluate.api import evaluate as evaluate
    from longrm.evaluate.compare import compare_runs
    from longrm.evaluate.errors import EvalError
    from longrm.evaluate.intervals import IntervalSettings
    from longrm.evaluate.run_files import Run, read_run
    from longrm.items import load_items, write_items
    from longrm.options import RewardModelOptions
    from longrm.rm.load import load_reward_model
    from longrm.train.align import train_align
    from longrm.train.config import AlignConfig, DisrmConfig, SftConfig
    from longrm.train.disrm import train_disrm
    from longrm.train.sft import train_sft


def __getattr__(name: str) -> Any:
    """Return an API name, importing its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'longrm' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    return module if name == "evaluate" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
