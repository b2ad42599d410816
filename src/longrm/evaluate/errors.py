"""The errors an evaluation raises on purpose, each naming the setting at fault."""

from __future__ import annotations


class EvalError(ValueError):
    """An evaluation that cannot run as asked; `setting` names the argument or option at fault
    (None when no single one is), so a command line can name its flag.
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class RunMismatchError(EvalError):
    """The output folder holds a run made with different arguments."""


class NoItemsError(EvalError):
    """The filters left no item to judge."""


class ModelLoadError(EvalError):
    """The reward model could not be loaded (bad spec, missing files, a refused option)."""


class RunFileError(EvalError):
    """A run folder's file (run.json, results.json) is missing, malformed or from a newer
    longrm.
    """


class RunFileMissingError(RunFileError, FileNotFoundError):
    """A run folder lacks the file asked for (not evaluated yet, or not a run folder)."""
