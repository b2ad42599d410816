"""Reports across runs: a markdown table in the paper's layout and a pairwise-by-length plot.

Reports are derived from each run's results.json (itself derived from predictions.jsonl), so they
can be rebuilt at any time without rerunning a model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from longrm.evaluate.metrics import bucket_sort_key, bucket_tokens

MISSING = "–"
# The official files' order; tasks outside it follow alphabetically.
TASK_ORDER = ("LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math")
BON_NS = ("2", "3", "4")
PLOT_NAME = "pairwise_by_length.png"


def load_results(run_dir: Path) -> dict[str, Any]:
    """Return a run's results.json as a dict."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"no results.json in {run_dir}: evaluate the run first")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def run_name(run_dir: Path) -> str:
    """Return a run's display name: run.json's "name", else its "model", else the dir name."""
    meta_path = Path(run_dir) / "run.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if isinstance(meta, dict):
            for key in ("name", "model"):
                if meta.get(key):
                    return str(meta[key])
    return Path(run_dir).resolve().name


def _pct(value: Any) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


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
            + [_pct(r.get("pairwise", {}).get("by_task", {}).get(t)) for t in tasks]
            + [_pct(r.get("bon", {}).get("by_n", {}).get(n, {}).get("rank_match")) for n in ns]
            + [_pct(r.get("overall"))]
            for name, r in runs
        ),
    )
    by_length = _table(
        ["Model", *buckets, "Avg"],
        (
            [_cell(name)]
            + [_pct(r.get("pairwise", {}).get("by_length", {}).get(b)) for b in buckets]
            + [_pct(r.get("pairwise", {}).get("length_mean"))]
            for name, r in runs
        ),
    )
    detail = _table(
        [
            "Model",
            "Pairwise acc",
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
                _pct(r.get("pairwise", {}).get("accuracy")),
                _pct(r.get("bon", {}).get("exact_match")),
                _pct(r.get("bon", {}).get("top1")),
                _pct(r.get("parse_failure_rate")),
                _pct(r.get("error_rate")),
                _pct(r.get("position_consistency")),
                _pct(r.get("auc")),
                _pct(r.get("context_ablation", {}).get("reliance")),
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
        "all items, pairwise and Best-of-N. Values in %.",
        by_length,
        "Table 2 layout (the paper's length table): pairwise accuracy per context-length "
        "bucket; Avg the mean of the bucket columns. Values in %.",
        detail,
        "Values in % except the counts. A parse failure or an error scores 0 and stays in every "
        "accuracy's denominator; parse failures are counted over answered records, errors "
        "(failed calls) over all. Context reliance: accuracy with the context minus accuracy "
        f"with it ablated (`--ablate-context`). {MISSING} means no items of that kind (or no "
        "scores, for AUC; no ablation run, for reliance).",
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


def _ablation_tables(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Return the context-ablation table: accuracy with / without context and reliance."""
    columns = ["overall"]
    for group in ("by_task", "by_length"):
        sort = _task_sort_key if group == "by_task" else bucket_sort_key
        columns += _union((block.get(group) for _, block in runs), sort)

    def cell(block: dict[str, Any], column: str) -> str:
        entry = block if column == "overall" else _lookup(block, column)
        if not entry:
            return MISSING
        return (
            f"{_pct(entry.get('accuracy_with_context'))} / "
            f"{_pct(entry.get('accuracy_without_context'))} / {_pct(entry.get('reliance'))}"
        )

    table = _table(
        ["Model", "method", *columns],
        [
            [_cell(name), str(block.get("method"))] + [cell(block, c) for c in columns]
            for name, block in runs
        ],
    )
    return [
        table,
        "Context ablation: accuracy with the context / with it ablated / their difference (the "
        "reward model's context reliance), overall, by task and by length bucket, in %. A "
        "context-blind judge scores near chance without the context; a benchmark on which it "
        "does not measures style, not grounding.",
    ]


def _lookup(block: dict[str, Any], column: str) -> dict[str, Any] | None:
    """Return the task or length entry named `column` of an ablation block."""
    for group in ("by_task", "by_length"):
        entry = block.get(group, {}).get(column)
        if entry:
            return dict(entry)
    return None


def plot_pairwise_by_length(results_by_run: dict[str, dict[str, Any]], path: Path) -> Path:
    """Write a PNG of pairwise accuracy versus context-length bucket, one line per run."""
    fig = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(fig)  # render with Agg directly: no pyplot state, no display needed
    ax = fig.add_subplot()
    ticks: dict[float, str] = {}
    for name, r in results_by_run.items():
        by_length = r.get("pairwise", {}).get("by_length", {})
        points = [
            (bucket_tokens(b), 100 * v, b)
            for b, v in sorted(by_length.items(), key=lambda kv: bucket_sort_key(kv[0]))
            if v is not None and bucket_tokens(b) < float("inf")  # unknown sizes cannot be placed
        ]
        if not points:
            continue
        ax.plot([x for x, _, _ in points], [y for _, y, _ in points], marker="o", label=name)
        ticks.update({x: label for x, _, label in points})
    ax.axhline(50, linestyle="--", color="gray", linewidth=1, label="chance (50%)")
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
    ax.set_ylabel("pairwise accuracy (%)")
    ax.set_title("Long-RewardBench pairwise accuracy by context length")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def write_report(
    run_dirs: list[Path], out_dir: Path, names: list[str] | None = None
) -> tuple[Path, Path]:
    """Write results.md and the pairwise-by-length PNG for the given runs; return both paths.

    `names` overrides the run names (one per run dir); repeated names get a " (2)" suffix so no
    run silently replaces another in the table.
    """
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"got {len(names)} names for {len(run_dirs)} run dirs")
    results_by_run: dict[str, dict[str, Any]] = {}
    for i, run_dir in enumerate(run_dirs):
        base = names[i] if names is not None else run_name(run_dir)
        name, k = base, 2
        while name in results_by_run:
            name, k = f"{base} ({k})", k + 1
        results_by_run[name] = load_results(run_dir)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path = plot_pairwise_by_length(results_by_run, out_dir / PLOT_NAME)
    sources = "\n".join(
        f"- {name}: `{d}`" for name, d in zip(results_by_run, run_dirs, strict=True)
    )
    md_path = out_dir / "results.md"
    md_path.write_text(
        "# Long-RewardBench results\n\n"
        + results_table_markdown(results_by_run)
        + f"\n\n![pairwise accuracy by context length]({PLOT_NAME})\n\n"
        + f"Runs:\n\n{sources}\n",
        encoding="utf-8",
    )
    return md_path, png_path
