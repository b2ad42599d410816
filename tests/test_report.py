"""Report tests: two fake runs in, a markdown table and a PNG out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from longrm.evaluate.metrics import compute_results
from longrm.evaluate.predictions import Prediction
from longrm.evaluate.report import results_table_markdown, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rec(
    key: str, tasktype: str, order: list[int], ranking: list[int] | None, **kw: object
) -> Prediction:
    fields: dict[str, object] = {
        "key": key,
        "task": "LongQA",
        "tasktype": tasktype,
        "n": len(order),
        "order_index": 0,
        "order": order,
        "ranking": ranking,
    }
    fields.update(kw)
    return Prediction.model_validate(fields)


def run_a() -> list[Prediction]:
    """Pairwise 4k: 1 of 2 right; 128k: 2 of 2 right; BoN-3 rank match 1/3; BoN-2 right."""
    return [
        rec("p1", "PairWise", [0, 1], [0, 1], length_bucket="4k"),
        rec("p2", "PairWise", [0, 1], None, length_bucket="4k"),
        rec("p3", "PairWise", [1, 0], [1, 0], length_bucket="128k"),
        rec("p4", "PairWise", [0, 1], [0, 1], length_bucket="128k", task="Safety"),
        rec("b3", "BestOfN", [0, 1, 2], [0, 2, 1], length_bucket="8k", task="Summ"),
        rec("b2", "BestOfN", [1, 0], [1, 0], length_bucket="8k", task="Summ"),
    ]


def run_b() -> list[Prediction]:
    """Pairwise only, 4k: 0 of 1 right, 16k: 1 of 1 right."""
    return [
        rec("p1", "PairWise", [0, 1], [1, 0], length_bucket="4k"),
        rec("p5", "PairWise", [0, 1], [0, 1], length_bucket="16k"),
    ]


def make_run(root: Path, dirname: str, preds: list[Prediction], meta: dict | None) -> Path:
    run_dir = root / dirname
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(compute_results(preds)))
    if meta is not None:
        (run_dir / "run.json").write_text(json.dumps(meta))
    return run_dir


def row(markdown: str, name: str) -> list[str]:
    """Return the cells of the first table row that starts with `name`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name}")


def points(markdown: str, name: str) -> list[str]:
    """Return `row` without the intervals ("62.5 [48.1, 75.0]" -> "62.5")."""
    return [cell.split(" [")[0] for cell in row(markdown, name)]


def test_write_report_tables_and_png(tmp_path: Path) -> None:
    a = make_run(tmp_path, "run-a", run_a(), {"name": "Model A", "model": "ignored"})
    b = make_run(tmp_path, "run-b", run_b(), None)
    md_path, png_path = write_report([a, b], tmp_path / "report")

    assert md_path == tmp_path / "report" / "results.md"
    assert png_path.read_bytes()[:8] == PNG_MAGIC
    md = md_path.read_text()

    header = row(md, "Model")
    # Table 1: tasks in the official order (pairwise accuracy), then Rank2..4, then Avg
    assert header == ["Model", "LongQA", "Safety", "Rank2", "Rank3", "Rank4", "Avg"]
    # Model A items: p1 1, p2 0, p3 1, p4 1, b3 1/3, b2 1
    #   LongQA pairs (p1, p2, p3) 2/3 -> 66.7; Safety 100.0; Summ holds only Best-of-N items,
    #   so it has no task column (its items count in Rank2/Rank3 and Avg)
    #   Rank2 100.0, Rank3 33.3, Rank4 none
    #   Avg (1 + 0 + 1 + 1 + 1/3 + 1) / 6 = 13/18 -> 72.2
    assert points(md, "Model A") == ["Model A", "66.7", "100.0", "100.0", "33.3", "–", "72.2"]
    # run-b has no run.json -> named after its dir; pairwise only
    assert points(md, "run-b") == ["run-b", "50.0", "–", "–", "–", "–", "50.0"]
    # Safety holds one right pair (nothing to resample): Wilson for 1 of 1, [1 / (1 + z^2), 1]
    assert row(md, "Model A")[2] == "100.0 [20.7, 100.0]"

    # Table 2: pairwise accuracy by bucket, then the mean of the buckets
    lengths = md.split("Table 1 layout")[1]
    assert row(lengths, "Model") == ["Model", "4k", "16k", "128k", "Avg"]
    # Model A: 4k 1/2, 128k 2/2 -> mean of buckets 75.0 (not the item mean, also 3/4 here)
    assert points(lengths, "Model A") == ["Model A", "50.0", "–", "100.0", "75.0"]
    assert points(lengths, "run-b") == ["run-b", "0.0", "100.0", "–", "50.0"]

    # robustness: pairwise acc, debiased acc, BoN exact, BoN top-1, parse failures, errors,
    # consistency, AUC, reliance, truncated, items. Model A: pairwise 3/4; no scores, so no
    # debiased accuracy; exact (0 + 1)/2; top-1 1; 1 of 6 unparsed
    second = md.split("Pairwise acc")[1]
    assert points(second, "Model A") == [
        "Model A", "75.0", "–", "50.0", "100.0", "16.7", "0.0", "–", "–", "–", "0", "6",
    ]  # fmt: skip
    assert points(second, "run-b") == [
        "run-b", "50.0", "–", "–", "–", "0.0", "0.0", "–", "–", "–", "0", "2",
    ]  # fmt: skip
    # no predictions.jsonl in these runs: the comparison says why it is missing
    assert f"No paired comparison: {a} has no predictions.jsonl." in md
    assert "pairwise_by_length.png" in md


def test_names_override_and_duplicates_are_kept(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", run_a(), {"model": "some/model"})
    b = make_run(tmp_path, "b", run_b(), None)
    md_path, _ = write_report([a, b], tmp_path / "out", names=["Same", "Same"])
    md = md_path.read_text()
    assert points(md, "Same")[-1] == "72.2"
    assert points(md, "Same (2)")[-1] == "50.0"
    with pytest.raises(ValueError):
        write_report([a, b], tmp_path / "out", names=["only one"])


def test_model_key_names_the_run(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", run_a(), {"model": "org/judge"})
    md_path, _ = write_report([a], tmp_path / "out")
    assert points(md_path.read_text(), "org/judge")[-1] == "72.2"


def test_table_marks_missing_values_and_escapes_pipes() -> None:
    md = results_table_markdown({"a|b": {"overall": None, "n_items": 0}})
    lines = md.splitlines()
    # the escaped pipe keeps the name in one cell; no tasks/buckets -> Model, Rank2..4, Avg
    assert "| a\\|b | – | – | – | – |" in lines
    assert "| a\\|b | – |" in lines  # the length table: only its Avg
    assert "| a\\|b | – | – | – | – | – | – | – | – | – | – | 0 |" in lines


def test_plot_without_pairwise_items_is_still_written(tmp_path: Path) -> None:
    run = make_run(tmp_path, "bon-only", [rec("b2", "BestOfN", [1, 0], [1, 0])], None)
    _, png = write_report([run], tmp_path / "out")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_missing_results_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="results.json"):
        write_report([tmp_path / "empty"], tmp_path / "out")


def test_robustness_table_by_length(tmp_path: Path) -> None:
    a = make_run(tmp_path, "run-a", run_a(), {"name": "Model A"})
    md = write_report([a], tmp_path / "report")[0].read_text()
    third = md.split("parse fail 4k")[1]
    # Model A: 4k has p1 parsed and p2 unparsed -> 50% failures; 8k and 128k none; no errors.
    # Every item was judged in one order only, so consistency is undefined (–).
    assert row("| Model" + third, "Model A") == [
        "Model A", "50.0", "0.0", "0.0", "0.0", "0.0", "0.0", "–", "–", "–",
    ]  # fmt: skip


def test_ablation_table_and_reliance_column(tmp_path: Path) -> None:
    from longrm.evaluate.metrics import context_reliance

    results = compute_results(run_a())
    blind = [p.model_copy(update={"ranking": [1, 0]}) for p in run_a() if p.n == 2]
    results["context_ablation"] = {"method": "swap", **context_reliance(run_a(), blind)}
    md = results_table_markdown({"Model A": results})
    # the five two-candidate items: with context p1 1, p2 0, p3 1, p4 1, b2 1 -> 80.0; blind,
    # always slot B: p1 0, p2 0, p3 1 (chosen shown in B), p4 0, b2 1 -> 40.0; reliance 40.0
    overall = md.split("| Model | method | with context |")[1]
    assert points(overall, "Model A") == ["Model A", "swap", "80.0", "40.0", "40.0", "5"]
    # reliance's interval: paired bootstrap of (with - without) = [1, 0, 0, 1, 0] per item
    lo, hi = results["context_ablation"]["reliance_ci"]
    assert 0.0 <= lo < 0.4 < hi <= 1.0
    assert row(overall, "Model A")[4] == f"40.0 [{100 * lo:.1f}, {100 * hi:.1f}]"
    # by task, in the official order: LongQA p1-p3 66.7 / 33.3; Summ b2 100 / 100; Safety p4
    breakdown = re.sub(r" \[[^]]*\]", "", md.split("| Model | method | LongQA |")[1])
    assert "| 66.7 / 33.3 / 33.3 | 100.0 / 100.0 / 0.0 | 100.0 / 0.0 / 100.0 |" in breakdown
    detail = md.split("Pairwise acc")[1]
    assert points(detail, "Model A")[9] == "40.0"
