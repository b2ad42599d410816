"""Reports across runs: a markdown table in the paper's layout and a pairwise-by-length plot.

Reports are derived from each run's results.json (itself derived from predictions.jsonl), so they
can be rebuilt at any time without rerunning a model. Asked for intervals drawn otherwise than
results.json's, a report recomputes them from the run's predictions files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from longrm.evaluate.compare import compare_runs
from longrm.evaluate.intervals import IntervalSettings
from longrm.evaluate.metrics import bucket_sort_key, bucket_tokens
from longrm.evaluate.run_files import PREDICTIONS, read_records, read_results, read_settings
from longrm.evaluate.runner import run_results

MISSING = "–"
# The official files' order; tasks outside it follow alphabetically.
TASK_ORDER = ("LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math")
BON_NS = ("2", "3", "4")
PLOT_NAME = "pairwise_by_length.png"


def load_results(run_dir: Path, ci: IntervalSettings | None = None) -> dict[str, Any]:
    """Return a run's results.json as a dict, its intervals drawn as `ci` says when given.

    When results.json's `ci` block differs from `ci`, the metrics are recomputed from the run's
    predictions files; that refuses (ValueError) when those files hold other records than
    results.json counted (a later run over another selection of items in the same folder). A
    results.json written before intervals existed is then returned as it is, and so is one
    without a predictions.jsonl beside it.
    """
    data = read_results(run_dir).as_dict()
    if ci is None or data.get("ci") == ci.as_dict() or not (Path(run_dir) / PREDICTIONS).exists():
        return data
    predictions, ablated = read_records(run_dir)
    fresh = run_results(predictions, ablated, ci)
    counts = ("n_items", "n_records")
    if any(fresh[k] != data.get(k) for k in counts):
        if "ci" not in data:
            return data
        raise ValueError(
            f"{run_dir}: predictions.jsonl holds {fresh['n_items']} items "
            f"({fresh['n_records']} records) where results.json counts {data.get('n_items')} "
            f"({data.get('n_records')}), so its intervals cannot be redrawn from it; rerun "
            "longrm eval on that folder with the interval flags you want"
        )
    return {**data, **fresh}


def run_name(run_dir: Path) -> str:
    """Return a run's display name: run.json's "name", else its "model", else the dir name."""
    settings = read_settings(run_dir)
    return (settings and (settings.name or settings.model)) or Path(run_dir).resolve().name


def _pct(value: Any, ci: Any = None) -> str:
    """Return a value in % with its interval when there is one: "62.5 [48.1, 75.0]"."""
    if value is None:
        return MISSING
    if not ci:
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _pct_of(block: dict[str, Any] | None, key: str, name: str | None = None) -> str:
    """Return `_pct` of block[key] (or block[key][name]) with its `<key>_ci` interval."""
    block = block or {}
    value, ci = block.get(key), block.get(f"{key}_ci")
    if name is not None:
        value = (value or {}).get(name)
        ci = (ci or {}).get(name)
    return _pct(value, ci)


def _count(value: Any) -> str:
    return MISSING if value is None else str(value)


def _cell(text: str) -> str:
    # A "|" in a run name would split the markdown cell.
    return text.replace("|", "\\|")


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _union(maps: Iterable[dict[str, Any] | None], sort_key: Callable[[str], Any]) -> list[str]:
    return sorted({k for m in maps if m for k in m}, key=sort_key)


def _task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def results_table_markdown(results_by_run: dict[str, dict[str, Any]]) -> str:
    """Return the paper-layout tables and the robustness tables as markdown, one row per run.

    Table 1 (the paper's main table): pairwise accuracy per task, Best-of-N rank match per N
    (Rank2/3/4) and Avg, the mean over all items. Table 2 (the paper's length table): pairwise
    accuracy per length bucket and the mean of those buckets.
    """
    runs = list(results_by_run.items())
    tasks = _union((r.get("pairwise", {}).get("by_task") for _, r in runs), _task_sort_key)
    ns = _union(
        [dict.fromkeys(BON_NS)] + [r.get("bon", {}).get("by_n") for _, r in runs],
        lambda n: (int(n) if n.isdigit() else 10**9, n),
    )
    buckets = _union((r.get("pairwise", {}).get("by_length") for _, r in runs), bucket_sort_key)

    main = _table(
        ["Model", *tasks, *(f"Rank{n}" for n in ns), "Avg"],
        (
            [_cell(name)]
            + [_pct_of(r.get("pairwise"), "by_task", t) for t in tasks]
            + [_pct_of(r.get("bon", {}).get("by_n", {}).get(n), "rank_match") for n in ns]
            + [_pct_of(r, "overall")]
            for name, r in runs
        ),
    )
    by_length = _table(
        ["Model", *buckets, "Avg"],
        (
            [_cell(name)]
            + [_pct_of(r.get("pairwise"), "by_length", b) for b in buckets]
            + [_pct_of(r.get("pairwise"), "length_mean")]
            for name, r in runs
        ),
    )
    detail = _table(
        [
            "Model",
            "Pairwise acc",
            "Debiased acc",
            "BoN exact",
            "BoN top-1",
            "Parse failures",
            "Errors",
            "Position consistency",
            "AUC",
            "Context reliance",
            "Truncated items",
            "Items",
        ],
        (
            [
                _cell(name),
                _pct_of(r.get("pairwise"), "accuracy"),
                _pct_of(r.get("pairwise"), "debiased_accuracy"),
                _pct_of(r.get("bon"), "exact_match"),
                _pct_of(r.get("bon"), "top1"),
                _pct(r.get("parse_failure_rate")),
                _pct(r.get("error_rate")),
                _pct(r.get("position_consistency")),
                _pct(r.get("auc")),
                _pct_of(r.get("context_ablation"), "reliance"),
                _count(r.get("truncated_items")),
                _count(r.get("n_items")),
            ]
            for name, r in runs
        ),
    )
    parts = [
        main,
        "Table 1 layout (the paper's main table): task columns hold pairwise accuracy per task; "
        "RankN the Best-of-N rank-match ratio with N candidates; Avg the mean item score over "
        f"all items, pairwise and Best-of-N. Values in %, {_level(runs)} intervals in brackets.",
        by_length,
        "Table 2 layout (the paper's length table): pairwise accuracy per context-length "
        "bucket; Avg the mean of the bucket columns. Values in %, intervals in brackets.",
    ]
    if any(r.get("pairwise", {}).get("debiased_by_length") for _, r in runs):
        parts += [
            _table(
                ["Model", *buckets, "All"],
                (
                    [_cell(name)]
                    + [_pct_of(r.get("pairwise"), "debiased_by_length", b) for b in buckets]
                    + [_pct_of(r.get("pairwise"), "debiased_accuracy")]
                    for name, r in runs
                ),
            ),
            "Order-debiased pairwise accuracy by context-length bucket (verdict-probability "
            "judges): a pair counts as right when the gold response's score, averaged over both "
            "display orders, is the higher (ties half), so a constant preference for a slot no "
            "longer hides a signal; All over every pair. Values in %, intervals in brackets.",
        ]
    parts += [
        detail,
        "Values in % except the counts, intervals in brackets. A parse failure or an error "
        "scores 0 and stays in every accuracy's denominator; parse failures are counted over "
        "answered records, errors (failed calls) over all. Debiased acc: the order-debiased "
        "pairwise accuracy. Context reliance: accuracy with the context minus accuracy with it "
        f"ablated (`--ablate-context`, the first method). {MISSING} means no items of that kind "
        "(or no scores, for AUC and debiased accuracy; no ablation run, for reliance).",
    ]
    ablation = [(name, r["context_ablation"]) for name, r in runs if r.get("context_ablation")]
    if ablation:
        parts += _ablation_tables(ablation)
    robust = [(name, r.get("robustness", {}).get("by_length")) for name, r in runs]
    robust_buckets = _union((m for _, m in robust), bucket_sort_key)
    if robust_buckets:
        rows = [
            [_cell(name)]
            + [_pct((m or {}).get(b, {}).get("parse_failure_rate")) for b in robust_buckets]
            + [_pct((m or {}).get(b, {}).get("error_rate")) for b in robust_buckets]
            + [_pct((m or {}).get(b, {}).get("position_consistency")) for b in robust_buckets]
            for name, m in robust
        ]
        header = ["Model"]
        header += [f"parse fail {b}" for b in robust_buckets]
        header += [f"errors {b}" for b in robust_buckets]
        header += [f"consistent {b}" for b in robust_buckets]
        parts += [
            _table(header, rows),
            "Parse-failure rate, error rate and position consistency by context bucket "
            "(all items), in %.",
        ]
    return "\n\n".join(parts)


def _level(runs: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """Return the confidence level the runs' intervals share, e.g. "95%"."""
    levels = {r["ci"]["level"] for _, r in runs if isinstance(r.get("ci"), dict)}
    return "/".join(f"{100 * lvl:g}%" for lvl in sorted(levels)) or "95%"


def _method_blocks(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return a context_ablation block's entry per method (a single-method block is its own)."""
    return dict(block.get("by_method") or {str(block.get("method")): block})


def _ablation_tables(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Return the context-ablation tables: overall with intervals, then by task and length."""
    rows = [
        (name, method, entry, prefix)
        for name, block in runs
        for method, entry in _method_blocks(block).items()
        for prefix in ("", "debiased_")
        if entry.get(f"{prefix}reliance") is not None or not prefix
    ]

    def label(method: str, prefix: str) -> str:
        return method + (" (order-debiased)" if prefix else "")

    overall = _table(
        ["Model", "method", "with context", "ablated", "reliance", "items"],
        [
            [
                _cell(name),
                label(method, prefix),
                _pct_of(entry, f"{prefix}accuracy_with_context"),
                _pct_of(entry, f"{prefix}accuracy_without_context"),
                _pct_of(entry, f"{prefix}reliance"),
                _count(entry.get("n_items")),
            ]
            for name, method, entry, prefix in rows
        ],
    )
    columns = []
    for group in ("by_task", "by_length"):
        sort = _task_sort_key if group == "by_task" else bucket_sort_key
        columns += _union((e.get(group) for _, _, e, _ in rows), sort)

    def cell(entry: dict[str, Any], column: str, prefix: str) -> str:
        found = _lookup(entry, column)
        if not found:
            return MISSING
        return (
            f"{_pct(found.get(f'{prefix}accuracy_with_context'))} / "
            f"{_pct(found.get(f'{prefix}accuracy_without_context'))} / "
            f"{_pct_of(found, f'{prefix}reliance')}"
        )

    table = _table(
        ["Model", "method", *columns],
        [
            [_cell(name), label(method, prefix)] + [cell(entry, c, prefix) for c in columns]
            for name, method, entry, prefix in rows
        ],
    )
    return [
        overall,
        "Context ablation: accuracy with the context, with it ablated (swap: another item's "
        "context of the same length; empty: none) and their difference, the reward model's "
        "context reliance, in % with intervals (reliance: paired bootstrap over items). A "
        "context-blind judge scores near chance without the context; a benchmark on which it "
        "does not measures style, not grounding, and a control far from chance is itself "
        "biased, which shifts reliance: compare the methods.",
        table,
        "The same by task and by length bucket: with / ablated / reliance [interval], in %.",
    ]


def _lookup(block: dict[str, Any], column: str) -> dict[str, Any] | None:
    """Return the task or length entry named `column` of an ablation block."""
    for group in ("by_task", "by_length"):
        entry = block.get(group, {}).get(column)
        if entry:
            return dict(entry)
    return None


def _points(
    by_length: dict[str, Any] | None, cis: dict[str, Any] | None
) -> list[tuple[float, float, float, float, str]]:
    """Return (tokens, %, below, above, bucket) for each placeable bucket with a value."""
    cis = cis or {}
    out = []
    for bucket, value in sorted((by_length or {}).items(), key=lambda kv: bucket_sort_key(kv[0])):
        if value is None or bucket_tokens(bucket) == float("inf"):
            continue  # unknown sizes cannot be placed
        lo, hi = cis.get(bucket) or (value, value)
        out.append(
            (bucket_tokens(bucket), 100 * value, 100 * (value - lo), 100 * (hi - value), bucket)
        )
    return out


def plot_pairwise_by_length(results_by_run: dict[str, dict[str, Any]], path: Path) -> Path:
    """Write a PNG of pairwise accuracy versus context-length bucket, one line per run, with
    interval error bars; a dashed line per run with the order-debiased accuracy when it has one.
    """
    fig = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(fig)  # render with Agg directly: no pyplot state, no display needed
    ax = fig.add_subplot()
    ticks: dict[float, str] = {}
    series = 2 * len(results_by_run)
    for i, (name, r) in enumerate(results_by_run.items()):
        pairwise = r.get("pairwise", {})
        color = f"C{i % 10}"
        for k, (key, style, label) in enumerate(
            (
                ("by_length", "-", name),
                ("debiased_by_length", "--", f"{name} (order-debiased)"),
            )
        ):
            points = _points(pairwise.get(key), pairwise.get(f"{key}_ci"))
            if not points:
                continue
            # Each series a little apart on the log axis, so error bars do not hide each other.
            dodge = 2 ** (0.03 * (2 * i + k - (series - 1) / 2))
            ax.errorbar(
                [x * dodge for x, *_ in points],
                [y for _, y, *_ in points],
                yerr=[[p[2] for p in points], [p[3] for p in points]],
                marker="o" if style == "-" else "s",
                linestyle=style,
                color=color,
                capsize=3,
                label=label,
            )
            ticks.update({p[0]: p[4] for p in points})
    ax.axhline(50, linestyle=":", color="gray", linewidth=1, label="chance (50%)")
    if ticks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ticks), list(ticks.values()))
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.text(
            0.5, 0.7, "no pairwise items with a length bucket", ha="center", transform=ax.transAxes
        )
    ax.set_ylim(0, 100)
    ax.set_xlabel("context length bucket (tokens)")
    ax.set_ylabel(f"pairwise accuracy (%), {_level(results_by_run.items())} interval")
    ax.set_title("Long-RewardBench pairwise accuracy by context length")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def run_names(run_dirs: list[Path], names: list[str] | None = None) -> list[str]:
    """Return each run's display name (`names` overrides `run_name`), repeats suffixed " (2)"
    so no run silently replaces another in a table.
    """
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"got {len(names)} names for {len(run_dirs)} run dirs")
    out: list[str] = []
    for i, run_dir in enumerate(run_dirs):
        base = names[i] if names is not None else run_name(run_dir)
        name, k = base, 2
        while name in out:
            name, k = f"{base} ({k})", k + 1
        out.append(name)
    return out


def _bench_hash(run_dir: Path) -> str | None:
    settings = read_settings(run_dir)
    return settings.bench_hash or None if settings else None


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _comparison_rows(entry: dict[str, Any], label: str) -> list[str]:
    return [
        label,
        _count(entry["n_items"]),
        _pct(entry["accuracy_a"]),
        _pct(entry["accuracy_b"]),
        _signed(entry["difference"], entry["difference_ci"]),
        f"{entry['only_a']} / {entry['only_b']}",
        _p(entry["mcnemar_p"]),
    ]


def _signed(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return MISSING
    text = f"{100 * value:+.1f}"
    return text if not ci else f"{text} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def comparison_markdown(
    run_dirs: list[Path],
    names: list[str] | None = None,
    ci: IntervalSettings | None = None,
) -> str:
    """Return paired comparisons (`compare.compare_runs`) of the first run (A) against each
    other run (B), as markdown: the difference in accuracy A - B on the items both judged, its
    paired-bootstrap interval and McNemar's exact p-value, overall and by length bucket.
    """
    ci = ci or IntervalSettings()
    labels = run_names(run_dirs, names)
    base_dir, base = run_dirs[0], labels[0]
    if not (Path(base_dir) / PREDICTIONS).exists():
        return f"No paired comparison: {base_dir} has no {PREDICTIONS}."
    base_preds = read_records(base_dir)[0]
    parts = []
    for run_dir, name in zip(run_dirs[1:], labels[1:], strict=True):
        if not (Path(run_dir) / PREDICTIONS).exists():
            parts.append(f"No paired comparison of {name}: {run_dir} has no {PREDICTIONS}.")
            continue
        cmp = compare_runs(base_preds, read_records(run_dir)[0], ci)
        header = ["", "items", _cell(base), _cell(name), "difference", "only A / only B", "p"]
        parts.append(f"### {_cell(base)} (A) against {_cell(name)} (B)")
        for title, entry in (("accuracy", cmp), ("order-debiased accuracy", cmp["debiased"])):
            if entry is None:
                continue
            rows = [_comparison_rows(entry, "all")]
            rows += [_comparison_rows(e, b) for b, e in entry["by_length"].items()]
            parts.append(f"{title.capitalize()}:\n\n" + _table(header, rows))
        if _bench_hash(run_dir) != _bench_hash(base_dir):
            parts.append("The two runs judged different benchmark files; items are matched by key.")
    level = f"{100 * ci.level:g}%"
    note = (
        "Paired comparison on the items both runs judged (rows by length bucket). difference: "
        f"accuracy of A minus B in points, with its {level} paired-bootstrap interval "
        f"({ci.n_resamples} resamples of items, seed {ci.seed}); only A / only B: items right "
        "in one run only, an item right when its score is above 0.5 (a pair right in both "
        "display orders); p: McNemar's exact two-sided p-value on those counts."
    )
    if ci.n_resamples == 0:
        note += " With --bootstrap 0 the difference has no interval."
    return "\n\n".join(["## Paired comparison", note, *parts])


def write_report(
    run_dirs: list[Path],
    out_dir: Path,
    names: list[str] | None = None,
    ci: IntervalSettings | None = None,
    compare: bool | None = None,
) -> tuple[Path, Path]:
    """Write results.md and the pairwise-by-length PNG for the given runs; return both paths.

    `names` overrides the run names (one per run dir); repeated names get a " (2)" suffix so no
    run silently replaces another in the table. `ci` redraws the intervals (see
    `load_results`). `compare` adds `comparison_markdown` (the first run against each other
    one); None adds it when there are exactly two runs.
    """
    labels = run_names(run_dirs, names)
    results_by_run = {name: load_results(d, ci) for name, d in zip(labels, run_dirs, strict=True)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path = plot_pairwise_by_length(results_by_run, out_dir / PLOT_NAME)
    sources = "\n".join(
        f"- {name}: `{d}`" for name, d in zip(results_by_run, run_dirs, strict=True)
    )
    comparison = ""
    if len(run_dirs) >= 2 and (compare or (compare is None and len(run_dirs) == 2)):
        comparison = "\n\n" + comparison_markdown(run_dirs, labels, ci)
    md_path = out_dir / "results.md"
    md_path.write_text(
        "# Long-RewardBench results\n\n"
        + results_table_markdown(results_by_run)
        + comparison
        + f"\n\n![pairwise accuracy by context length]({PLOT_NAME})\n\n"
        + f"Runs:\n\n{sources}\n",
        encoding="utf-8",
    )
    return md_path, png_path
