"""Items and release rows: the official schema, the authors' release, and errors on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import OFFICIAL, RELEASE

from longrm.items import (
    ItemError,
    PreferenceRow,
    SftRow,
    item_to_row,
    load_items,
    load_release_rows,
    write_items,
)


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (OFFICIAL / name).read_text().splitlines()]


def _write(path: Path, rows: list[dict | str]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def test_official_folder_loads_gold_order_best_first() -> None:
    items = {i.key: i for i in load_items(OFFICIAL).items}
    assert sorted(items) == ["Cite:0", "Cite:1", "LongQA:0", "LongQA:1"]
    pair = items["LongQA:0"]
    assert pair.is_pairwise and pair.n == 2
    assert pair.candidates[0].startswith("The ferry Orla returned at dusk")
    bon = items["LongQA:1"]
    assert bon.n == 3 and bon.candidate_scores == [0.95, 0.7, 0.1]
    assert bon.length_bucket == "8k"
    assert items["Cite:0"].prompt[0]["role"] == "system"


def test_single_file_and_limit() -> None:
    loaded = load_items(OFFICIAL / "Cite.jsonl", limit=1)
    assert [i.key for i in loaded.items] == ["Cite:0"]


def test_round_trip_through_official_rows(tmp_path: Path) -> None:
    items = load_items(OFFICIAL).items
    write_items(items, tmp_path)
    again = load_items(tmp_path).items
    assert [item_to_row(i) for i in again] == [item_to_row(i) for i in items]
    # the written rows keep every official field
    row = json.loads((tmp_path / "LongQA.jsonl").read_text().splitlines()[1])
    for name in ("prompt_template", "ctx_length_for_length", "tasktype", "candidates_score"):
        assert name in row


def test_save_to_disk_folder(tmp_path: Path) -> None:
    import datasets

    rows = _rows("LongQA.jsonl")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    items = load_items(tmp_path / "ds").items
    assert [i.key for i in items] == ["LongQA:0", "LongQA:1"]


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    bad = _write(tmp_path / "LongQA.jsonl", [rows[0], '{"id": 1, "task": ', rows[1]])
    with pytest.raises(ItemError) as info:
        load_items(bad)
    assert info.value.line == 2 and info.value.field == "<json>"
    assert str(bad) in str(info.value)


def test_missing_field(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    del rows[1]["tasktype"]
    with pytest.raises(ItemError, match=r"LongQA.jsonl:2: field 'tasktype'"):
        load_items(_write(tmp_path / "LongQA.jsonl", rows))


def test_empty_candidate_list(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    rows[1]["candidates"] = []
    rows[1]["candidates_score"] = []
    with pytest.raises(ItemError, match="field 'candidates': a Best-of-N row needs at least 2"):
        load_items(_write(tmp_path / "LongQA.jsonl", rows))


def test_pairwise_without_rejected(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    rows[0]["rejected"] = ""
    with pytest.raises(ItemError, match=":1: field 'rejected'"):
        load_items(_write(tmp_path / "LongQA.jsonl", rows))


def test_gold_order_disagreement_is_an_error(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    rows[1]["candidates_score"] = [0.7, 0.95, 0.1]  # candidate 2 beats candidate 1
    with pytest.raises(ItemError) as info:
        load_items(_write(tmp_path / "LongQA.jsonl", rows))
    assert info.value.line == 2 and info.value.field == "candidates_score"
    assert "disagrees with the stored order" in str(info.value)


def test_skip_invalid_counts_rows(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    broken = dict(rows[1], candidates_score=[0.1, 0.9, 0.5])
    path = _write(tmp_path / "LongQA.jsonl", [rows[0], "not json", broken, rows[1] | {"id": 7}])
    loaded = load_items(path, skip_invalid=True)
    assert [i.key for i in loaded.items] == ["LongQA:0", "LongQA:7"]
    assert [(e.line, e.field) for e in loaded.skipped] == [(2, "<json>"), (3, "candidates_score")]


def test_duplicate_id(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    rows[1]["id"] = 0
    with pytest.raises(ItemError, match="duplicate id LongQA:0"):
        load_items(_write(tmp_path / "LongQA.jsonl", rows))


def test_missing_path() -> None:
    with pytest.raises(FileNotFoundError):
        load_items("/nonexistent/bench")


@pytest.mark.parametrize(
    ("name", "model", "count"),
    [
        ("sft-eval.jsonl", SftRow, 2),
        ("sft-test.jsonl", SftRow, 2),
        ("hf/sft-eval", SftRow, 2),
        ("preference-train.jsonl", PreferenceRow, 16),
        ("preference-eval.jsonl", PreferenceRow, 2),
        ("preference-test.jsonl", PreferenceRow, 2),
        ("hf/preference-eval", PreferenceRow, 2),
    ],
)
def test_release_rows(name: str, model: type, count: int) -> None:
    rows = load_release_rows(RELEASE / name, model)
    assert len(rows) == count
    for row in rows:
        messages = row.messages()
        assert messages[-1]["role"] == "user" and len(messages[-1]["content"]) > 1000
    if model is PreferenceRow:
        assert all(len(r.rejects) == 4 and r.chosen.startswith("[Analysis]") for r in rows)
    else:
        assert all("[Score:" in r.golden for r in rows)


def test_release_row_errors_are_located(tmp_path: Path) -> None:
    lines = (RELEASE / "preference-eval.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["rejects"] = []
    path = _write(tmp_path / "pref.jsonl", [lines[0], row])
    with pytest.raises(ItemError, match=r"pref.jsonl:2: field 'rejects'"):
        load_release_rows(path, PreferenceRow)
    skipped: list[ItemError] = []
    assert len(load_release_rows(path, PreferenceRow, skipped=skipped)) == 1
    assert skipped[0].line == 2


def test_release_folder_copy_is_readable(tmp_path: Path) -> None:
    shutil.copytree(RELEASE / "hf" / "sft-eval", tmp_path / "sft")
    assert load_release_rows(tmp_path / "sft", SftRow)[0].perspective in {
        "faithfulness",
        "helpfulness",
    }


def test_unknown_and_word_length_fields_survive_a_round_trip(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    rows[0]["ctx_length_for_words"] = "6k"
    rows[0]["annotator_note"] = {"checked": True}
    src = _write(tmp_path / "src.jsonl", rows)
    write_items(load_items(src).items, tmp_path / "out")
    back = json.loads((tmp_path / "out" / "LongQA.jsonl").read_text().splitlines()[0])
    assert back["ctx_length_for_words"] == "6k" and back["annotator_note"] == {"checked": True}


# --- loose fields, strict scores (robust loading) ------------------------------------------------


def test_fields_the_evaluation_never_reads_accept_null_and_scalars(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    rows[0].update(question=None, subtask=17, source=None, chosen_model=None, words_count=None)
    rows[1].update(subtype=3, candidates_model=["gen-a", None, 2], length=None)
    items = load_items(_write(tmp_path / "LongQA.jsonl", rows)).items
    pair, bon = items
    assert (pair.question, pair.subtask, pair.source, pair.words_count) == ("", "17", "", 0)
    assert pair.candidate_models == ["", "gen-a"]
    assert bon.subtype == "3" and bon.candidate_models == ["gen-a", "", "2"] and bon.length == 0


def test_non_finite_candidate_score_is_rejected_with_its_place(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    path = tmp_path / "LongQA.jsonl"
    # json.dumps writes NaN as the bare token NaN, which Python's reader accepts
    rows[1]["candidates_score"] = [0.95, float("nan"), 0.1]
    _write(path, rows)
    with pytest.raises(ItemError) as info:
        load_items(path)
    assert (info.value.line, info.value.field) == (2, "candidates_score.1")
    assert "finite" in info.value.message


def test_rank_column_must_match_the_candidate_count(tmp_path: Path) -> None:
    rows = _rows("LongQA.jsonl")
    rows[1]["subtype"] = "4"  # a Rank4 row with three candidates
    with pytest.raises(ItemError, match=r":2: field 'subtype': .*'4'.* holds 3 candidates"):
        load_items(_write(tmp_path / "LongQA.jsonl", rows))
    rows[1]["subtype"] = ""  # a missing Rank column is taken from the candidates
    assert load_items(_write(tmp_path / "LongQA.jsonl", rows)).items[1].subtype == "3"


def test_items_remember_the_file_they_came_from() -> None:
    assert {i.origin for i in load_items(OFFICIAL).items} == {"Cite", "LongQA"}


# --- short preference rows (RewardBench / TRL) ---------------------------------------------------


SHORT = OFFICIAL.parent / "short"


def test_rewardbench_style_rows_become_pairs() -> None:
    items = load_items(SHORT / "rewardbench_style.jsonl").items
    assert [i.key for i in items] == ["chat-easy:11", "chat-easy:12", "safety:13"]
    first = items[0]
    assert first.is_pairwise and first.length_bucket == "short"
    assert first.prompt == [{"role": "user", "content": "Name a primary colour."}]
    assert first.candidates == [
        "Red is a primary colour.",
        "Green tea is popular in many countries.",
    ]


def test_trl_conversational_rows_keep_their_messages() -> None:
    items = load_items(SHORT / "trl_conversational.jsonl").items
    # no subset: the task is the file's name; no id: the row's index
    assert [i.key for i in items] == ["trl_conversational:0", "trl_conversational:1"]
    assert items[0].prompt[0] == {"role": "system", "content": "You answer briefly."}
    assert items[0].candidates == ["Mercury.", "Venus."]


def test_a_folder_mixes_short_files() -> None:
    assert len(load_items(SHORT).items) == 5


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "chosen"),
        ({"prompt": "q", "chosen": "a"}, "rejected"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt"),
        (
            {"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
            "chosen",
        ),
    ],
)
def test_bad_preference_rows_are_located(tmp_path: Path, row: dict, field: str) -> None:
    path = _write(tmp_path / "prefs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(ItemError) as info:
        load_items(path)
    assert (info.value.line, info.value.field) == (2, field)
