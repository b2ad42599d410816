"""Evaluation: the runner, metrics, reports, run files, and `longrm.evaluate(...)` itself.

`longrm.evaluate` names both this package and the library's entry point, so the package is
callable: `longrm.evaluate(bench, out, model, options)` runs `longrm.evaluate.api.evaluate`,
whether or not a submodule was imported first (importing one binds the package, not the
function, to `longrm.evaluate`).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from longrm.evaluate.api import evaluate

        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
