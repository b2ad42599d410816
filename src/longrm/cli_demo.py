"""`longrm demo`: the default model on a length-graded suite, with the context and without it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from longrm.cli_common import RunProgress, console, fail


def demo_command(
    out: Annotated[
        Path, typer.Option(help="Folder for the suite, the runs and the report.")
    ] = Path("demo-out"),
    full: Annotated[
        bool,
        typer.Option(
            help="The full demo: 4K tokens too, Best-of-N items, and the generating judge on "
            "every item with the control (about 17 minutes on two CPU cores)."
        ),
    ] = False,
    max_new_tokens: Annotated[
        int, typer.Option(help="Tokens the generating judge may write.")
    ] = 48,
) -> None:
    """Build a small by-construction suite and judge it with the default model as likelihood
    reward and as logprob judge, each also with another item's context (the control), and as
    generating judge on a few records; print accuracy by length with the context and without,
    the tables and the report paths. Under five minutes on two CPU cores (--full: longer).
    """
    import dataclasses

    from longrm.demo import FULL, QUICK, prepare_demo, run_step, step_command, write_demo_report
    from longrm.evaluate.errors import EvalError
    from longrm.evaluate.report import results_table_markdown

    plan = dataclasses.replace(FULL if full else QUICK, max_new_tokens=max_new_tokens)
    console.rule("longrm demo: the default model on a length-graded, by-construction suite")
    suite = prepare_demo(out, plan)
    console.print(
        f"suite: {len(suite.items)} items ({plan.lengths} tokens) in {suite.bench}; "
        f"estimated {suite.estimate_s / 60:.1f} min on two idle CPU cores"
    )
    runs = []
    for step in plan.steps:
        console.rule(step.label)
        console.print(step_command(suite, step))  # the same step from the shell (it resumes)
        progress = RunProgress("judging", "rec/s", f"records already judged in {out / step.label}")
        try:
            with progress:
                runs.append(
                    run_step(suite, step, on_start=progress.start, on_record=progress.advance)
                )
        except EvalError as err:
            raise fail(str(err)) from None
    console.rule("the runs side by side")
    report = write_demo_report(suite, runs)
    typer.echo(results_table_markdown({r.name: r.results.as_dict() for r in runs}))
    typer.echo(
        "\nAccuracy by length, with the context / with another item's context (the control), "
        "in %:\n" + report.by_length
    )
    console.print(f"report: {report.md}\nplot: {report.plot}")
    if not full:
        generate = plan.steps[-1]
        whole = dataclasses.replace(generate, control=True, lengths=None, limit=None)
        typer.echo(
            f"The generating judge judged {generate.limit} pairs only; on every item, with the "
            "control (about 10 minutes on two CPU cores):\n  "
            + step_command(suite, whole, out / f"{generate.label}-all")
            + f"\nThe full demo (4K tokens, Best-of-N items): longrm demo --full --out {out}-full"
        )
