"""What a reproduction reports: accuracy by length with an interval in every cell, paired
comparisons between its models, its goals, and beside each row the command that reproduces it.

Everything is computed from the runs' prediction records (not from their results.json), so the
table, the comparisons and the goals share one definition of an item's score and one interval
setting. An item's score is the mean over its display orders; intervals resample items.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from longrm.evaluate.compare import paired_difference
from longrm.evaluate.intervals import IntervalSettings
from longrm.evaluate.metrics import (
    bucket_sort_key,
    debiased_item_scores,
    group_by_item,
    interval,
    item_scores,
    latest_records,
    mean_or_none,
    pairwise_correct,
)
from longrm.evaluate.predictions import Prediction
from longrm.evaluate.run_files import read_records
from longrm.train.goals import Goal

METRICS = {
    "accuracy": "accuracy",
    "debiased": "order-debiased accuracy",
    "parse_failures": "parse failures",
}
CONDITIONS = {"context": "given", "swap": "swapped", "empty": "emptied"}
MISSING = "–"


def _pairwise(records: Iterable[Prediction]) -> list[Prediction]:
    return [p for p in latest_records(records) if p.is_pairwise]


def item_failures(records: Iterable[Prediction]) -> dict[str, float]:
    """Return per item the share of its answered records without a usable verdict (records that
    errored say nothing about the format and are left out, as in `parse_failure_rate`)."""
    out = {}
    for key, recs in group_by_item(records).items():
        answered = [r for r in recs if r.error is None]
        if answered:
            out[key] = fmean(0.0 if r.parsed else 1.0 for r in answered)
    return out


@dataclass(frozen=True)
class RunRecords:
    """A run's pairwise records, latest per (item, order): as judged and per context control."""

    records: list[Prediction]
    ablated: dict[str, list[Prediction]]

    @classmethod
    def read(cls, folder: Path) -> RunRecords:
        """Return the records of a `longrm eval` run folder."""
        records, ablated = read_records(folder)
        return cls(_pairwise(records), {m: _pairwise(r) for m, r in ablated.items()})

    def values(self, metric: str = "accuracy", condition: str = "context") -> dict[str, float]:
        """Return each item's score under `metric` ("accuracy": correct in both orders counts
        1, in one 0.5; "debiased": `metrics.debiased_pair_score`; "parse_failures": the share
        of its records without a verdict) with the context given or ablated (`condition`)."""
        records = self.records if condition == "context" else self.ablated.get(condition, [])
        if metric == "accuracy":
            return item_scores(records, pairwise_correct)
        if metric == "debiased":
            return debiased_item_scores(records) or {}
        if metric == "parse_failures":
            return item_failures(records)
        raise ValueError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")

    def bucket_of(self) -> dict[str, str]:
        """Return each item's length bucket."""
        every = self.records + [p for recs in self.ablated.values() for p in recs]
        return {p.key: p.length_bucket for p in every}


def select(
    values: dict[str, float], bucket_of: dict[str, str], buckets: Collection[str] | None
) -> dict[str, float]:
    """Return the item values whose bucket is in `buckets` (all when None)."""
    if buckets is None:
        return dict(values)
    return {k: v for k, v in values.items() if bucket_of.get(k) in buckets}


def pooled(
    run: RunRecords,
    metric: str,
    condition: str,
    buckets: Collection[str] | None,
    ci: IntervalSettings,
) -> tuple[float | None, list[float] | None, int]:
    """Return (mean, interval, items) of a metric over the items of some buckets."""
    values = list(select(run.values(metric, condition), run.bucket_of(), buckets).values())
    return mean_or_none(values), interval(values, ci), len(values)


def paired(
    a: RunRecords,
    b: RunRecords,
    metric: str,
    buckets: Collection[str] | None,
    ci: IntervalSettings,
) -> dict[str, Any]:
    """Return run A against run B on the items of `buckets` both scored
    (`compare.paired_difference`: difference, paired-bootstrap interval, McNemar's p)."""
    values_a = select(a.values(metric), a.bucket_of(), buckets)
    return paired_difference(values_a, b.values(metric), ci)


@dataclass(frozen=True)
class Row:
    """A row of the length table: a run, a metric, and the context given or ablated."""

    model: str
    run: str  # the EvalStep label
    metric: str = "accuracy"
    condition: str = "context"


@dataclass(frozen=True)
class Comparison:
    """Run A against run B: by bucket, over all items, and over the pooled `groups`."""

    a: str
    b: str
    metric: str = "accuracy"
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()


def buckets_of(runs: Iterable[RunRecords]) -> list[str]:
    """Return every length bucket the runs judged, shortest first."""
    found = {b for run in runs for b in run.bucket_of().values()}
    return sorted(found, key=bucket_sort_key)


def _cell(value: float | None, ci: list[float] | None, n: int) -> dict[str, Any]:
    return {"value": value, "interval": ci, "n": n}


def row_entry(
    row: Row, run: RunRecords, buckets: list[str], command: str, ci: IntervalSettings
) -> dict[str, Any]:
    """Return a row's cells (each bucket and "all": value, interval, items) and its command."""
    cells = {b: _cell(*pooled(run, row.metric, row.condition, (b,), ci)) for b in buckets}
    cells["all"] = _cell(*pooled(run, row.metric, row.condition, None, ci))
    return {
        "model": row.model,
        "run": row.run,
        "metric": row.metric,
        "condition": row.condition,
        "cells": cells,
        "command": command,
    }


def comparison_entry(
    cmp: Comparison,
    runs: dict[str, RunRecords],
    names: dict[str, str],
    buckets: list[str],
    ci: IntervalSettings,
) -> dict[str, Any]:
    """Return A against B per bucket, pooled over each group, and over all items."""
    a, b = runs[cmp.a], runs[cmp.b]
    scopes: list[tuple[str, Collection[str] | None]] = [(x, (x,)) for x in buckets]
    scopes += [(label, group) for label, group in cmp.groups]
    scopes.append(("all", None))
    return {
        "a": names[cmp.a],
        "b": names[cmp.b],
        "metric": cmp.metric,
        "scopes": [{"scope": s, **paired(a, b, cmp.metric, g, ci)} for s, g in scopes],
    }


def build_report(
    *,
    track: str,
    rows: list[Row],
    comparisons: list[Comparison],
    goals: list[Goal],
    runs: dict[str, RunRecords],
    names: dict[str, str],
    commands: dict[str, str],
    ci: IntervalSettings,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Return the reproduction's report as reproduce.json stores it."""
    buckets = buckets_of(runs.values())
    return {
        "track": track,
        **extra,
        "buckets": buckets,
        "rows": [row_entry(r, runs[r.run], buckets, commands[r.run], ci) for r in rows],
        "comparisons": [comparison_entry(c, runs, names, buckets, ci) for c in comparisons],
        "goals": [g.as_dict() for g in goals],
        "goal_lines": [g.line() for g in goals],
        "ci": ci.as_dict(),
    }


# ---------------------------------------------------------------------------------------------
# Markdown


def _pct(cell: dict[str, Any]) -> str:
    value, ci = cell.get("value"), cell.get("interval")
    if value is None:
        return MISSING
    text = f"{100 * value:.1f}"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _signed(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return MISSING
    text = f"{100 * value:+.1f}"
    return text + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def length_table(report: dict[str, Any]) -> str:
    """Return the length table: one row per (model, metric, context), intervals in every cell,
    the command that reproduces the row in the last column."""
    buckets = report["buckets"]
    header = ["model", "metric", "context", *buckets, "all", "reproduce with"]
    body = [
        [
            r["model"],
            METRICS[r["metric"]],
            CONDITIONS[r["condition"]],
            *(_pct(r["cells"][b]) for b in [*buckets, "all"]),
            f"`{r['command']}`",
        ]
        for r in report["rows"]
    ]
    sizes = {b: max((r["cells"][b]["n"] for r in report["rows"]), default=0) for b in buckets}
    level = f"{100 * report['ci']['level']:g}%"
    metrics = {r["metric"] for r in report["rows"]}
    conditions = {r["condition"] for r in report["rows"]}
    note = [
        f"Percent of held-out pairs, with {level} intervals: bootstrap over pairs "
        f"({report['ci']['bootstrap']} resamples, seed {report['ci']['seed']}; both display "
        "orders of a pair resampled together), Wilson where every pair scores the same. Pairs "
        "per bucket: " + ", ".join(f"{b}: {n}" for b, n in sizes.items()) + ".",
        "Accuracy: a pair counts 1 when right in both display orders, 0.5 in one.",
    ]
    if "debiased" in metrics:
        note.append(
            "Order-debiased: right when the gold answer's verdict score, averaged over both "
            "orders, is the higher (a constant preference for a slot cancels)."
        )
    if "parse_failures" in metrics:
        note.append("Parse failures: the share of a pair's records without a verdict.")
    if conditions & {"swap", "empty"}:
        note.append(
            "Context swapped: another held-out pair's context of the same length; emptied: none."
        )
    return _table(header, body) + "\n\n" + " ".join(note)


def comparisons_table(report: dict[str, Any]) -> str:
    """Return the paired comparisons: A - B per scope with its paired interval and McNemar."""
    header = ["A", "B", "metric", "scope", "pairs", "A", "B", "A - B", "only A / only B", "p"]
    body = [
        [
            c["a"],
            c["b"],
            METRICS[c["metric"]],
            s["scope"],
            str(s["n_items"]),
            _pct({"value": s["accuracy_a"]}),
            _pct({"value": s["accuracy_b"]}),
            _signed(s["difference"], s["difference_ci"]),
            f"{s['only_a']} / {s['only_b']}",
            f"{s['mcnemar_p']:.3g}",
        ]
        for c in report["comparisons"]
        for s in c["scopes"]
    ]
    note = (
        "A - B in points on the pairs both judged, with its paired-bootstrap interval (pairs "
        "resampled, both models' scores of a pair together); only A / only B: pairs right in "
        "both orders for one model only; p: McNemar's exact two-sided test on those counts."
    )
    return _table(header, body) + "\n\n" + note


def markdown(report: dict[str, Any]) -> str:
    """Return the whole report: length table, comparisons, goals, models, data, time."""
    parts = [f"# longrm reproduce --track {report['track']}"]
    if report.get("summary"):
        parts.append(report["summary"])
    parts += ["## Accuracy by context length", length_table(report)]
    if report["comparisons"]:
        parts += ["## Paired comparisons", comparisons_table(report)]
    parts += ["## Goals (each decided by its interval)"]
    parts.append("\n".join(f"- {line}" for line in report["goal_lines"]) or "(none)")
    models = report.get("models") or []
    if models:
        header = ["model", "trained with", "steps", "loss first -> last", "minutes"]
        body = [
            [
                m["label"],
                f"`{m['command']}`",
                str(m.get("steps", MISSING)),
                f"{m.get('first_loss', MISSING)} -> {m.get('final_loss', MISSING)}",
                str(m.get("minutes", MISSING)),
            ]
            for m in models
        ]
        parts += ["## Models", _table(header, body)]
    if report.get("data_line"):
        parts += ["## Data", report["data_line"]]
    if report.get("time_line"):
        parts += ["## Time", report["time_line"]]
    return "\n\n".join(parts) + "\n"
