"""The Python API: `longrm.evaluate` in-process and its folder shared with the CLI, the options
declared once (flags, identity and reproduce line derived from them), typed run files and their
versions, typed errors, lazy exports, and README's example run as written.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import typer
from conftest import OFFICIAL
from typer.testing import CliRunner

import longrm
from longrm.cli import app, eval_command
from longrm.evaluate.errors import EvalError, NoItemsError, RunFileError, RunMismatchError
from longrm.evaluate.run_files import (
    NOT_IDENTITY,
    RUN_SCHEMA,
    SCORING_VERSION,
    EvalSettings,
    read_run,
)
from longrm.options import (
    OptionError,
    RewardModelOptions,
    flag_name,
    option_argv,
    option_fields,
    run_identity,
)

README = Path(__file__).resolve().parents[1] / "README.md"
# `longrm eval`'s own settings: everything it takes that is not a reward-model option
EVAL_FLAGS = {
    "--bench", "--out", "--model", "-m", "--orders", "--seed", "--limit", "--tasks", "--lengths",
    "--skip-invalid", "--ablate-context", "--ci-level", "--bootstrap", "--ci-seed",
    "--retry-errors", "--allow-errors", "--name", "--help",
}  # fmt: skip
# run.json's fields that the evaluation sets, not the reward-model options
EVAL_IDENTITY = {"model", "orders", "seed", "bench_hash", "ablate_context", "extra"}


def _cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def _eval_command() -> Any:
    """Return `longrm eval` as the (click-style) command typer builds from it."""
    return typer.main.get_command(app).commands["eval"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# One declaration: flags, run identity and reproduce line


def test_every_declared_option_is_an_eval_flag_with_its_type_default_and_help() -> None:
    params = {p.name: p for p in _eval_command().params if p.param_type_name == "option"}
    hints = get_type_hints(RewardModelOptions)
    signature = inspect.signature(eval_command)
    declared = set()
    for f in option_fields():
        flag = flag_name(f)
        if flag is None:
            assert f.name not in params  # library-only (force_score)
            continue
        declared.add(flag)
        param = params[f.name]
        assert flag in param.opts, (f.name, param.opts)
        assert param.default == f.default and param.help == f.metadata["help"]
        if hints[f.name] is bool:
            assert param.is_flag and "--no-" + flag[2:] in param.secondary_opts
        else:
            assert not param.is_flag
        # the type typer reads is the declared one
        assert get_args(signature.parameters[f.name].annotation)[0] == hints[f.name]
    flags = {o for p in params.values() for o in p.opts}
    assert flags - declared == EVAL_FLAGS - {"--help"}  # nothing else is a flag


@pytest.mark.parametrize(
    ("path", "defaults"),
    [(("serve",), {"max_new_tokens": 512}), (("bon",), {"max_new_tokens": 512})],
)
def test_serve_and_bon_take_every_declared_option_from_the_declaration(
    path: tuple[str, ...], defaults: dict[str, Any]
) -> None:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    params = {p.name: p for p in command.params if p.param_type_name == "option"}
    for f in option_fields():
        flag = flag_name(f)
        if flag is None:
            assert f.name not in params
            continue
        param = params[f.name]
        assert flag in param.opts and param.help == f.metadata["help"], f.name
        assert param.default == defaults.get(f.name, f.default), f.name


def test_the_run_identity_and_run_json_name_the_same_fields() -> None:
    identity = run_identity(RewardModelOptions(), "judge")
    record = set(EvalSettings.model_fields) - set(NOT_IDENTITY) - {"scoring_version"}
    assert set(identity) == record - EVAL_IDENTITY
    declared = {
        f.metadata.get("identity_name", f.name) for f in option_fields() if "identity" in f.metadata
    }
    assert declared == set(identity)
    # judge-only options are blank for other kinds, so they cannot split scalar runs
    scalar = run_identity(RewardModelOptions(verdict="logprob", max_new_tokens=7), "scalar")
    assert (scalar["verdict"], scalar["max_new_tokens"], scalar["prompts"]) == ("", 0, "")


def test_the_reproduce_flags_rebuild_the_options() -> None:
    options = RewardModelOptions(
        kind="judge", verdict="logprob", protocol="paper", prefix_cache=False, max_new_tokens=9,
        thinking=True, max_length=300, rope_scaling="yarn:2", dtype="float32",
        attn_implementation="sdpa", concurrency=2, timeout=5.0, retries=1, prefill=True,
        openai_params='{"top_p": 1}',
    )  # fmt: skip
    argv = ["--bench", "b", "--out", "o", *option_argv(options, "judge")]
    params = _eval_command().make_context("eval", argv).params
    rebuilt = RewardModelOptions(
        **{f.name: params[f.name] for f in option_fields() if flag_name(f)}
    )
    assert rebuilt == options
    # defaults stay off the line, but a judge's verdict mode and budget are always given
    assert option_argv(RewardModelOptions(), "judge") == [
        "--kind", "judge", "--verdict", "generate", "--max-new-tokens", "2048",
    ]  # fmt: skip
    assert option_argv(RewardModelOptions(verdict="logprob"), "scalar") == ["--kind", "scalar"]


def test_commands_that_spell_flags_out_get_the_same_options() -> None:
    from longrm.cli_common import reward_model_options

    backend = reward_model_options(kind="judge", prompts=Path("p.toml"), attn="sdpa", retries=1)
    assert (backend.prompts_file, backend.attn_implementation, backend.retries) == (
        Path("p.toml"), "sdpa", 1,
    )  # fmt: skip
    assert backend.max_new_tokens == RewardModelOptions().max_new_tokens
    with pytest.raises(TypeError, match="not reward-model options: attn_implementation"):
        reward_model_options(attn_implementation="sdpa")  # the flag's name, not the field's
    with pytest.raises(OptionError, match="unknown protocol"):
        reward_model_options(protocol="theirs")


def test_a_refused_option_names_its_flag() -> None:
    with pytest.raises(OptionError, match="unknown verdict 'maybe'") as err:
        RewardModelOptions(verdict="maybe")
    assert err.value.name == "verdict"
    text = _cli("eval", "--bench", str(OFFICIAL), "--out", "x", "--verdict", "maybe", code=2)
    assert "--verdict: unknown verdict 'maybe'" in text


# ---------------------------------------------------------------------------------------------
# longrm.evaluate in-process, and its folder shared with the CLI


def test_the_api_and_the_cli_resume_each_other(tiny_causal: str, tmp_path: Path) -> None:
    options = RewardModelOptions(kind="likelihood")
    api_first = tmp_path / "api-first"
    run = longrm.evaluate(OFFICIAL, api_first, tiny_causal, options, name="lik")
    assert (run.judged, run.resumed, run.results.n_items, run.results.n_records) == (8, 0, 4, 8)
    assert run.report_md is not None and run.report_md.is_file() and run.plot is not None
    assert run.settings.bench_hash and run.settings.kind == "likelihood"
    args = ["--model", tiny_causal, "--kind", "likelihood", "--bench", str(OFFICIAL)]
    assert "0 judged now, 8 resumed" in _cli("eval", *args, "--out", str(api_first))

    cli_first = tmp_path / "cli-first"
    text = _cli("eval", *args, "--out", str(cli_first))
    again = longrm.evaluate(load_items_of(OFFICIAL), cli_first, tiny_causal, options)
    assert (again.judged, again.resumed) == (0, 8)  # items or their path: the same identity
    assert again.results.overall == run.results.overall
    # the printed reproduce line, run as printed, resumes the same folder too
    line = next(ln for ln in text.splitlines() if ln.startswith("reproduce: longrm eval "))
    assert "0 judged now, 8 resumed" in _cli(*shlex.split(line.removeprefix("reproduce: longrm ")))


def load_items_of(path: Path) -> list[Any]:
    return longrm.load_items(path).items


def test_a_loaded_reward_model_is_evaluated_and_left_open(tiny_scalar: str, tmp_path: Path) -> None:
    rm = longrm.load_reward_model(tiny_scalar, RewardModelOptions(kind="scalar"))
    run = longrm.evaluate(OFFICIAL, tmp_path, rm, RewardModelOptions(kind="scalar"), orders=1)
    assert run.results.n_records == 4 and run.settings.model == rm.name
    assert rm.rank_item(*_first_pair(), pairwise=True).ranking is not None  # still usable
    with pytest.raises(EvalError, match="needs options.kind") as err:
        longrm.evaluate(OFFICIAL, tmp_path / "other", rm)
    assert err.value.setting == "kind"
    rm.close()


def _first_pair() -> tuple[Any, list[str]]:
    item = next(i for i in longrm.load_items(OFFICIAL).items if i.is_pairwise)
    return item.prompt, list(item.candidates)


def test_typed_errors_name_the_setting(tiny_causal: str, tmp_path: Path) -> None:
    options = RewardModelOptions(kind="likelihood")
    with pytest.raises(NoItemsError, match="no items left") as err:
        longrm.evaluate(OFFICIAL, tmp_path / "a", tiny_causal, options, tasks=["nope"])
    assert err.value.setting == "tasks"
    with pytest.raises(EvalError, match="unknown") as err:
        longrm.evaluate(OFFICIAL, tmp_path / "b", tiny_causal, options, ablate_context="blur")
    assert err.value.setting == "ablate_context"
    with pytest.raises(EvalError, match="--kind openai"):
        longrm.evaluate(OFFICIAL, tmp_path / "c", tiny_causal, RewardModelOptions(kind="openai"))
    text = _cli(
        "eval", "--bench", str(OFFICIAL), "--out", str(tmp_path / "d"), "--model", tiny_causal,
        "--ablate-context", "blur", code=2,
    )  # fmt: skip
    assert "--ablate-context: unknown" in text


# ---------------------------------------------------------------------------------------------
# Typed run files, versions


def _likelihood_run(model: str, out: Path) -> Path:
    longrm.evaluate(OFFICIAL, out, model, RewardModelOptions(kind="likelihood"), orders=1)
    return out


def test_read_run_round_trips_the_files(tiny_causal: str, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _cli(
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(OFFICIAL),
        "--out", str(folder), "--ablate-context", "swap,empty",
    )  # fmt: skip
    run = read_run(folder)
    written = json.loads((folder / "results.json").read_text())
    assert written["schema_version"] == 1
    assert run.results.as_dict() == written
    assert run.settings == EvalSettings.model_validate_json((folder / "run.json").read_text())
    assert run.settings.longrm_version == longrm.__version__
    assert run.settings.scoring_version == SCORING_VERSION
    assert len(run.predictions) == written["n_records"] == 8
    assert {m: len(r) for m, r in run.ablated.items()} == {"swap": 8, "empty": 8}
    header = read_run(folder, records=False)
    assert header.predictions == [] and header.results == run.results


def test_a_resume_across_a_scoring_change_is_refused(tiny_causal: str, tmp_path: Path) -> None:
    folder = _likelihood_run(tiny_causal, tmp_path / "run")
    record = json.loads((folder / "run.json").read_text())
    # another longrm release with the same scoring resumes
    (folder / "run.json").write_text(json.dumps({**record, "longrm_version": "0.0.9"}))
    assert _likelihood_run(tiny_causal, folder).exists()
    assert read_run(folder).settings.longrm_version == longrm.__version__  # rewritten
    # one that scored differently is refused, and says why
    (folder / "run.json").write_text(json.dumps({**record, "scoring_version": 1}))
    with pytest.raises(RunMismatchError, match=r"scoring version 1\);.*scoring version 2"):
        _likelihood_run(tiny_causal, folder)
    # a folder from before versioned runs is refused too
    unversioned = {
        k: v for k, v in record.items() if k not in ("scoring_version", "longrm_version")
    }
    (folder / "run.json").write_text(json.dumps(unversioned))
    with pytest.raises(RunMismatchError, match="a longrm before versioned runs"):
        _likelihood_run(tiny_causal, folder)
    assert read_run(folder).settings.scoring_version is None  # read back as unknown


@pytest.mark.bad_run_files
def test_bad_and_newer_run_files_are_clear_errors(tiny_causal: str, tmp_path: Path) -> None:
    folder = _likelihood_run(tiny_causal, tmp_path / "run")
    results = json.loads((folder / "results.json").read_text())
    (folder / "results.json").write_text(json.dumps({**results, "schema_version": 99}))
    with pytest.raises(RunFileError, match="schema version 99, newer than this longrm reads"):
        read_run(folder)
    (folder / "results.json").write_text(json.dumps({**results, "n_items": "many"}))
    with pytest.raises(RunFileError, match="results.json: field 'n_items'"):
        read_run(folder)
    text = _cli("report", str(folder), "--out", str(tmp_path / "rep"), code=2)
    assert "field 'n_items'" in text
    (folder / "results.json").write_text(json.dumps(results))
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, "schema_version": RUN_SCHEMA + 1}))
    with pytest.raises(RunFileError, match="run.json: schema version 2"):
        read_run(folder)


# ---------------------------------------------------------------------------------------------
# The public names and their documentation


def test_the_public_names_load_lazily_and_resolve() -> None:
    code = (
        "import sys, longrm; heavy = [m for m in ('torch', 'transformers', 'longrm.evaluate') "
        "if m in sys.modules]; print(heavy); print(callable(longrm.evaluate))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
    assert sorted(longrm.__all__) == sorted(["__version__", *longrm._EXPORTS])
    for name in longrm.__all__:
        assert getattr(longrm, name) is not None
    importlib.import_module("longrm.evaluate.runner")  # binds the package to longrm.evaluate
    assert callable(longrm.evaluate)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        longrm.nope  # noqa: B018


def test_train_configs_list_every_parameter_they_declare() -> None:
    for config in (longrm.SftConfig, longrm.AlignConfig, longrm.DisrmConfig, RewardModelOptions):
        doc = config.__doc__ or ""
        own = [n for n in config.__dict__["__annotations__"]]
        assert own, config
        for f in dataclasses.fields(config):
            if f.name in own and "help" in f.metadata:
                entry = re.search(rf"^    {f.name} \(`[^`]+`, defaults to `(.*)`\):$", doc, re.M)
                assert entry, (config.__name__, f.name)
                first_words = " ".join(f.metadata["help"].split()[:4])
                assert first_words in " ".join(doc.split()), (config.__name__, f.name)


def test_readme_python_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_model_path: str
) -> None:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README's Python API section has no python block"
    monkeypatch.chdir(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"likelihood: \d+\.\d% on 4 pairs, \d+\.\d% with the context .*", lines[0])
    assert lines[2].startswith("likelihood - judge: ") and "McNemar p" in lines[2]
    assert read_run(tmp_path / "api-out" / "judge-logprob").settings.verdict == "logprob"
