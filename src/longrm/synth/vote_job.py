"""A whole vote as one library call: read the units, plan and load the judges, run the vote
(voting_run.py), close the judges, and say how to run it again.

`longrm synth vote` builds a VoteJob from its flags, calls `run_vote_job` and prints the result;
a notebook or a pipeline calls the same function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from longrm.items import ItemError
from longrm.options import (
    RewardModelOptions,
    flag_argv,
    flag_name,
    is_judge_kind,
    option_fields,
)
from longrm.rm.base import RewardModel
from longrm.rm.load import load_reward_model, resolve_kind
from longrm.synth.units import ReadResult, VoteItem, read_units
from longrm.synth.vote import Vote
from longrm.synth.voting_run import (
    Judge,
    VoteOutcome,
    VoteSettings,
    judge_plan,
    load_judges,
    run_vote,
)

#: the reward-model options a vote's judges take (`longrm.options` declares them; the others,
#: such as the kind and the verdict mode, are fixed by voting or do not apply to short prompts)
JUDGE_OPTIONS = (
    "prompts_file",
    "max_new_tokens",
    "thinking",
    "max_length",
    "dtype",
    "concurrency",
    "timeout",
    "retries",
    "openai_params",
    "force_score",
)
#: how long a judgment may be, unless the options say otherwise
VOTE_MAX_NEW_TOKENS = 1024
#: the flag of the one judge option that has none in the declaration (it exists for voting)
FORCE_SCORE_FLAG = "--force-score"


def default_judge_options() -> RewardModelOptions:
    """Return the judges' options when none are given: generating judges, 1024 new tokens."""
    return RewardModelOptions(verdict="generate", max_new_tokens=VOTE_MAX_NEW_TOKENS)


@dataclass
class VoteJob:
    """What a vote is asked to do (one field per `longrm synth vote` flag).

    Attributes:
        out: run folder; judgments.jsonl in it is the source of truth and a rerun resumes it.
        rows: rows to judge (JSONL, folder of JSONL, or save_to_disk folder); exactly one of
            `rows` and `from_judgments` is given.
        from_judgments: rows that carry their judgments already (a run's judgments.jsonl); no
            model is called.
        models: judge specs ('default', an HF id, a path, openai:NAME@URL); empty: ('default',).
        samples: judges per model: N seeded samples named SPEC#s0..SPEC#s{N-1}.
        temperature: sampling temperature of every judge (0: greedy).
        seed: seed of sample 0; sample i uses seed + i.
        min_agree: judges that must give the same score for a consensus (at least 2).
        judge_priority: judge names, most trusted first: whose explanation a consensus keeps.
        limit: read only the first `limit` rows.
        skip_invalid: skip bad rows (counted in the result) instead of failing on the first.
        judge_options: how the judges are built (the JUDGE_OPTIONS fields count: prompts file,
            max_new_tokens, max_length, dtype, thinking, force_score, the openai client's
            settings); the verdict mode is always `generate` and the kind is resolved per
            model. The prompts file also words the training rows.
        save_to_disk: also write sft/, preferences/ and pairs/ as save_to_disk folders.
    """

    out: Path
    rows: Path | None = None
    from_judgments: Path | None = None
    models: tuple[str, ...] = ()
    samples: int = 1
    temperature: float = 0.0
    seed: int = 0
    min_agree: int = 2
    judge_priority: tuple[str, ...] = ()
    limit: int | None = None
    skip_invalid: bool = False
    judge_options: RewardModelOptions = field(default_factory=default_judge_options)
    save_to_disk: bool = False

    @property
    def specs(self) -> tuple[str, ...]:
        """Return the judge specs: `models`, or the default model alone."""
        return self.models or ("default",)


class VoteInputError(ValueError):
    """The job cannot start: its inputs contradict each other or its rows cannot be read.

    `skippable` is True when the fault is a bad row that `skip_invalid` would skip.
    """

    def __init__(self, message: str, skippable: bool = False) -> None:
        super().__init__(message)
        self.skippable = skippable


@dataclass
class VoteJobResult:
    """A finished job: the run's outcome, the rows skipped as invalid, and its command line."""

    outcome: VoteOutcome
    skipped: list[ItemError]
    argv: list[str]


def _check(job: VoteJob) -> None:
    """Raise VoteInputError when the job's inputs contradict each other."""
    if (job.rows is None) == (job.from_judgments is None):
        raise VoteInputError("give either --in ROWS (judged by --model) or --from-judgments FILE")
    if job.from_judgments is not None and job.models:
        raise VoteInputError("--from-judgments votes on judgments already made: drop --model")
    if job.min_agree < 2:
        raise VoteInputError(f"--min-agree {job.min_agree}: a consensus needs at least 2 judges")


def read_job_units(job: VoteJob) -> ReadResult:
    """Return the job's units (and rows skipped), or raise VoteInputError naming the bad row."""
    _check(job)
    source = job.rows if job.rows is not None else job.from_judgments
    assert source is not None
    try:
        read = read_units(source, skip_invalid=job.skip_invalid, limit=job.limit)
    except ItemError as err:
        raise VoteInputError(str(err), skippable=True) from err
    except FileNotFoundError as err:
        raise VoteInputError(str(err)) from err
    if not read.units:
        raise VoteInputError(f"no rows to vote on in {source}")
    return read


def load_job_judges(job: VoteJob) -> list[Judge]:
    """Return the judges the job names, each model loaded once; ValueError for a bad plan or a
    model that cannot judge (a scalar or likelihood reward model writes no explanation).
    """
    plan = judge_plan(job.specs, job.samples, job.temperature, job.seed)
    kinds = {spec: resolve_kind(spec, None) for spec in job.specs}
    for spec, kind in kinds.items():
        if not is_judge_kind(kind):  # a judge writes an explanation and a [Score: n]
            raise ValueError(
                f"--model {spec} is a {kind} reward model: voting needs judges that write "
                "an explanation and a [Score: n] (a causal LM or openai:NAME@URL)"
            )
    options = job.judge_options.replace(verdict="generate")

    def load(spec: str) -> RewardModel:
        return load_reward_model(spec, dataclasses.replace(options, kind=kinds[spec]))

    return load_judges(plan, load)


def run_vote_job(
    job: VoteJob,
    *,
    on_read: Callable[[ReadResult], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_unit: Callable[[VoteItem, Vote | None, str | None], None] | None = None,
) -> VoteJobResult:
    """Read the job's units, judge the new ones, vote, write every output; return the result.

    `on_read` sees the units read (and rows skipped) before any model loads; `on_start` and
    `on_unit` follow the run as in `run_vote`. Raises VoteInputError before any work, and
    ValueError or OSError from the judges and the run folder (VoteMismatchError when it holds
    other judges' judgments).
    """
    read = read_job_units(job)
    if on_read is not None:
        on_read(read)
    judges = load_job_judges(job) if job.rows is not None else None
    settings = VoteSettings(
        min_agree=job.min_agree,
        priority=job.judge_priority,
        prompts_file=job.judge_options.prompts_file,
        save_to_disk=job.save_to_disk,
    )
    try:
        outcome = run_vote(
            read.units, judges, job.out, settings, on_start=on_start, on_unit=on_unit
        )
    finally:
        for model in {id(j.model): j.model for j in judges or []}.values():
            model.close()
    return VoteJobResult(outcome=outcome, skipped=read.skipped, argv=reproduce_argv(job))


def reproduce_argv(job: VoteJob) -> list[str]:
    """Return the `longrm synth vote` arguments that run the job again (defaults left out; the
    judges' token budget always shown when models judge).
    """
    judged = job.rows is not None
    flags: dict[str, str | None] = {
        "--in": str(job.rows) if job.rows is not None else None,
        "--from-judgments": str(job.from_judgments) if job.from_judgments is not None else None,
        "--out": str(job.out),
        "--samples": str(job.samples) if job.samples != 1 else None,
        "--temperature": str(job.temperature) if job.temperature else None,
        "--seed": str(job.seed) if job.seed else None,
        "--min-agree": str(job.min_agree) if job.min_agree != 2 else None,
        "--judge-priority": ",".join(job.judge_priority) or None,
        "--limit": str(job.limit) if job.limit is not None else None,
    }
    argv = [part for spec in (job.specs if judged else ()) for part in ("--model", spec)]
    argv += [part for k, v in flags.items() if v is not None for part in (k, v)]
    argv += judge_option_argv(job.judge_options, judged)
    argv += ["--skip-invalid"] * job.skip_invalid + ["--save-to-disk"] * job.save_to_disk
    return argv


def judge_option_argv(options: RewardModelOptions, judged: bool) -> list[str]:
    """Return the flags of the judge options that differ from a vote's defaults, derived from
    the declaration; without judging (`--from-judgments`) only the prompts count (they word
    the training rows).
    """
    defaults = default_judge_options()
    argv: list[str] = []
    for f in option_fields():
        if f.name not in JUDGE_OPTIONS or (not judged and f.name != "prompts_file"):
            continue
        flag = flag_name(f) or FORCE_SCORE_FLAG
        value = getattr(options, f.name)
        if f.name == "max_new_tokens" or value not in (getattr(defaults, f.name), None):
            argv += flag_argv(flag, value)
    return argv
