"""The by-construction benchmark builder: sizes, labels that hold, schema, haystack sources."""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from longrm.bench.construct import FAMILIES, FORMATS, build_suite, parse_lengths
from longrm.bench.haystack import (
    Haystack,
    HaystackError,
    load_haystack,
    parse_hf_spec,
    split_paragraphs,
)
from longrm.items import BEST_OF_N, PAIRWISE, Item, load_items, write_items

LENGTHS = "512,1k,2k,4k,8k"
SIZES = dict(parse_lengths(LENGTHS))


@pytest.fixture(scope="session")
def suite(tokenizer: Any) -> list[Item]:
    """Two items per (length, family, format) cell: 160 items, a couple of seconds."""
    return build_suite(tokenizer, lengths=LENGTHS, items_per_cell=2, seed=7)


def _content(item: Item) -> str:
    return item.prompt[0]["content"]


def _context(item: Item) -> str:
    m = re.search(r"<context>\n(.*)\n</context>", _content(item), re.S)
    assert m, "prompt lacks its <context> block"
    return m.group(1)


def _tiers(item: Item, *prefixes: str) -> list[str | None]:
    """Return, per prefix, the candidate whose tier name starts with it (None if not offered)."""
    by_name = dict(zip(item.candidate_models, item.candidates, strict=True))
    return [next((t for n, t in by_name.items() if n.startswith(p)), None) for p in prefixes]


def _prose(seed: int, n_paragraphs: int) -> str:
    """Return generated filler prose (no copied text): sentences of random common words."""
    rng = random.Random(seed)
    vocab = ["river", "stone", "garden", "window", "lantern", "market", "road", "winter"]
    paras = []
    for _ in range(n_paragraphs):
        sentences = [
            " ".join(rng.choice(vocab) for _ in range(rng.randint(8, 14))).capitalize() + "."
            for _ in range(rng.randint(2, 5))
        ]
        paras.append(" ".join(sentences))
    return "\n\n".join(paras)


# ---------------------------------------------------------------------------------------------
# parse_lengths


def test_parse_lengths_labels_and_sizes() -> None:
    got = parse_lengths("512,1k,2k,4k,8k,16k,32k,64k,128k")
    assert got[:3] == [("512", 512), ("1k", 1024), ("2k", 2048)]
    assert got[-1] == ("128k", 131072)
    assert parse_lengths(" 8K , 1000 ") == [("8k", 8192), ("1000", 1000)]


@pytest.mark.parametrize("spec", ["", "8k,,16k", "1x", "k", "-1k", "0", "8k,8192", "1.5k"])
def test_parse_lengths_rejects_garbage(spec: str) -> None:
    with pytest.raises(ValueError, match="length"):
        parse_lengths(spec)


# ---------------------------------------------------------------------------------------------
# The suite as a whole


def test_same_seed_same_items_other_seed_differs(tokenizer: Any, suite: list[Item]) -> None:
    again = build_suite(tokenizer, lengths=LENGTHS, items_per_cell=2, seed=7)
    assert again == suite
    other = build_suite(tokenizer, lengths="1k", families=["single_fact"], seed=8)
    mine = [i for i in suite if i.task == "single_fact" and i.length_bucket == "1k"]
    assert [_content(i) for i in other] != [_content(i) for i in mine[::2]]


def test_every_family_format_and_bucket_is_present(suite: list[Item]) -> None:
    cells = Counter((i.length_bucket, i.task, i.subtype) for i in suite)
    assert {t for _, t, _ in cells} == set(FAMILIES)
    assert {b for b, _, _ in cells} == set(SIZES)
    assert {s for _, _, s in cells} == {"same", "2", "3", "4"}
    assert set(cells.values()) == {2}
    assert len(suite) == len(SIZES) * len(FAMILIES) * len(FORMATS) * 2


def test_rows_follow_the_official_schema(suite: list[Item]) -> None:
    for item in suite:
        n = len(item.candidates)
        if item.subtype == "same":
            assert item.tasktype == PAIRWISE and n == 2 and item.candidate_scores is None
        else:
            assert item.tasktype == BEST_OF_N and n == int(item.subtype)
            scores = item.candidate_scores or []
            assert len(scores) == n and all(a > b for a, b in itertools_pairwise(scores))
        assert item.subtask == ">".join(item.candidate_models)
        assert len(set(item.candidates)) == n
        assert item.source.startswith("python-docs")
        assert item.prompt[0]["role"] == "user" and len(item.prompt) == 1
        assert item.question in _content(item)
        assert item.words_count == len(_content(item).split())
    keys = [i.key for i in suite]
    assert len(keys) == len(set(keys))


def itertools_pairwise(values: list[float]) -> list[tuple[float, float]]:
    return list(zip(values, values[1:], strict=False))


def test_round_trip_through_task_files(suite: list[Item], tmp_path: Path) -> None:
    written = write_items(suite, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{f}.jsonl" for f in FAMILIES)
    first = json.loads(written[0].read_text().splitlines()[0])
    assert first["ctx_length_for_length"] in SIZES and isinstance(first["length"], int)
    loaded = load_items(tmp_path)
    assert not loaded.skipped
    assert {i.key: i for i in loaded.items} == {i.key: i for i in suite}


def test_prompt_lengths_measured_and_inside_the_bucket(tokenizer: Any, suite: list[Item]) -> None:
    counts = [
        len(ids)
        for ids in tokenizer([_content(i) for i in suite], add_special_tokens=False)["input_ids"]
    ]
    for item, n in zip(suite, counts, strict=True):
        size = SIZES[item.length_bucket]
        assert item.length == n
        assert 0.80 * size <= n <= 0.95 * size, (item.key, item.length_bucket, n)
    # Lengths spread over the band rather than piling up at one edge.
    shares = [i.length / SIZES[i.length_bucket] for i in suite]
    assert min(shares) < 0.86 and max(shares) > 0.89


def test_choices_spread_evenly(suite: list[Item]) -> None:
    single = [i for i in suite if i.task == "single_fact"]
    bins = Counter(int(i.extra["depth"] * 5) for i in single)
    assert set(bins) == {0, 1, 2, 3, 4} and max(bins.values()) - min(bins.values()) <= 1
    hops = Counter(i.extra["hops"] for i in suite if i.task == "multi_hop")
    assert set(hops) == {2, 3, 4} and max(hops.values()) - min(hops.values()) <= 1
    for family in FAMILIES:
        kinds = Counter(
            i.extra["wrong_kind"] for i in suite if i.task == family and "wrong_kind" in i.extra
        )
        assert abs(kinds["contradicted"] - kinds["absent"]) <= 4, (family, kinds)
        lows = Counter(
            i.candidate_models[1] for i in suite if i.task == family and i.subtype == "same"
        )
        assert set(lows) == {"partial", "wrong-contradicted", "wrong-absent", "off-topic"}
    partial_kinds = Counter(i.extra.get("partial_kind") for i in suite if i.task == "counting")
    assert {"off_by_one", "unsupported_extra", "false_extra"} <= set(partial_kinds)


def test_candidate_lengths_do_not_give_the_tier_away(suite: list[Item]) -> None:
    words: dict[str, list[int]] = {}
    for item in suite:
        for name, text in zip(item.candidate_models, item.candidates, strict=True):
            words.setdefault(name.split("-")[0], []).append(len(text.split()))
    means = {tier: statistics.mean(v) for tier, v in words.items()}
    assert set(means) == {"grounded", "partial", "wrong", "off"}
    assert max(means.values()) / min(means.values()) < 1.3, means


# ---------------------------------------------------------------------------------------------
# Labels hold by construction: check each family against its own context


def _check_absent(item: Item) -> None:
    context = _context(item).lower()
    for term in item.extra["absent_terms"]:
        assert term.lower() not in context, (item.key, term)


def test_single_fact_needle_and_near_miss(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "single_fact"):
        context, answer = _context(item), item.extra["answer"]
        assert context.count(item.extra["needle"]) == 1 and context.count(answer) == 1
        assert context.count(item.extra["distractor"]) == 1
        _check_absent(item)
        grounded, partial, wrong = _tiers(item, "grounded", "partial", "wrong")
        if grounded:
            assert answer in grounded
        if partial:
            assert answer in partial
        if wrong:
            value = item.extra["wrong_value"]
            assert value in wrong and answer not in wrong
            if (
                item.extra["wrong_kind"] == "contradicted"
            ):  # the context gives it to another subject
                assert value in item.extra["distractor"] and context.count(value) == 1
            else:
                assert value not in context


def test_single_fact_depth_is_where_the_needle_is(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "single_fact" and i.length_bucket == "8k"):
        context = _context(item)
        at = context.index(item.extra["needle"]) / len(context)
        assert abs(at - item.extra["depth"]) < 0.1, (item.key, at, item.extra["depth"])


def test_multi_hop_chain_is_planted_and_resolves(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "multi_hop"):
        context, chain, facts = _context(item), item.extra["chain"], item.extra["chain_facts"]
        assert len(facts) == item.extra["hops"] == len(chain)
        for fact in facts:
            assert context.count(fact) == 1
        for a, b, fact in zip(chain, chain[1:], facts, strict=False):  # each link names both ends
            assert a in fact and b in fact
        assert chain[-1] in facts[-1] and facts[-1].endswith(f"{item.extra['answer']}.")
        assert item.question.count(" of ") == item.extra["hops"] and chain[0] in item.question
        _check_absent(item)
        grounded, wrong = _tiers(item, "grounded", "wrong")
        if grounded:
            assert item.extra["answer"] in grounded and all(p in grounded for p in chain)
        if wrong:
            assert item.extra["answer"] not in wrong and item.extra["wrong_value"] in wrong
            value = item.extra["wrong_value"]
            if item.extra["wrong_kind"] == "contradicted":  # stops one hop short
                assert any(chain[-2] in p and value in p for p in context.split("\n\n"))
            else:
                assert item.extra["wrong_value"] not in context


def _docs(item: Item) -> dict[int, str]:
    parts = re.split(r"^\[Doc (\d+)\]\n", _context(item), flags=re.M)
    assert parts[0] == ""
    return {int(k): body for k, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_citation_cites_the_document_that_holds_the_claim(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "citation"):
        docs, extra = _docs(item), item.extra
        assert sorted(docs) == list(range(1, extra["n_docs"] + 1))
        holders = [k for k, body in docs.items() if extra["needle"] in body]
        assert holders == [extra["doc"]]
        assert [k for k, b in docs.items() if extra["distractor"] in b] == [extra["distractor_doc"]]
        _check_absent(item)
        grounded, partial, wrong = _tiers(item, "grounded", "partial", "wrong")
        for text in (grounded, partial):
            if text:  # the answer, then its citation first of all
                assert extra["answer"] in text.split("[Doc")[0]
                assert re.findall(r"\[Doc (\d+)\]", text)[0] == str(extra["doc"])
        if wrong:
            cited = int(re.findall(r"\[Doc (\d+)\]", wrong)[0])
            assert cited == extra["wrong_doc"] != extra["doc"]
            assert extra["answer"] not in wrong
            if extra["wrong_kind"] == "contradicted":
                assert cited == extra["distractor_doc"] and extra["wrong_value"] in docs[cited]
            else:
                assert cited not in docs and extra["wrong_value"] not in _context(item)


def test_counting_count_equals_planted_mentions(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "counting"):
        context, extra = _context(item), item.extra
        k = extra["count"]
        assert context.count(extra["marker"]) == k == len(extra["depths"])
        assert context.count(extra["distractor_marker"]) == extra["distractor_count"]
        assert abs(extra["distractor_count"] - k) >= 2
        _check_absent(item)
        grounded, partial, wrong = _tiers(item, "grounded", "partial", "wrong")
        if grounded:
            assert f"{extra['marker']} " in grounded and f" {k} times" in grounded
        if partial:
            assert abs(extra["partial_count"] - k) == (extra["partial_kind"] == "off_by_one")
            n = extra["partial_count"]
            assert (f" {n} times" if n > 1 else " once") in partial
        if wrong:
            n = extra["wrong_count"]
            assert abs(n - k) >= 2 and (f" {n} times" if n > 1 else " once") in wrong
            if extra["wrong_kind"] == "contradicted":  # the look-alike event's count
                assert n == extra["distractor_count"]
        else:
            assert "wrong_count" not in extra and "wrong_kind" not in extra


# ---------------------------------------------------------------------------------------------
# Arguments and haystack sources


def test_bad_arguments_raise(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_suite(tokenizer, lengths="1k", families=["poetry"])
    with pytest.raises(ValueError, match="unknown format"):
        build_suite(tokenizer, lengths="1k", formats=["bon5"])
    with pytest.raises(ValueError, match="too small"):
        build_suite(tokenizer, lengths="64", families=["counting"])


def test_user_text_files_as_haystack(tokenizer: Any, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(_prose(1, 30))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text(_prose(2, 30))
    (tmp_path / "ignored.csv").write_text("x,y\n1,2\n")
    stack = load_haystack(str(tmp_path))
    assert stack.description == f"files:{tmp_path}" and len(stack) == 60
    items = build_suite(tokenizer, lengths="2k", formats=["pairwise"], haystack=stack, seed=1)
    assert len(items) == len(FAMILIES)
    for item in items:
        assert item.source == stack.description
        assert 0.80 * 2048 <= item.length <= 0.95 * 2048
        assert "river" in _context(item) or "stone" in _context(item)


def test_missing_or_empty_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(HaystackError, match="no such file"):
        load_haystack(str(tmp_path / "nowhere"))
    with pytest.raises(HaystackError, match=r"no \.txt or \.md files"):
        load_haystack(str(tmp_path))
    (tmp_path / "short.txt").write_text("too short\n\n1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n")
    with pytest.raises(HaystackError, match="no usable paragraphs"):
        load_haystack(str(tmp_path))
    with pytest.raises(HaystackError, match="holds no usable"):
        Haystack((), "empty")


def test_hf_spec_parsing() -> None:
    assert parse_hf_spec("hf:wikitext") == ("wikitext", "train", "text")
    assert parse_hf_spec("hf:org/data:validation:body") == ("org/data", "validation", "body")
    for bad in ("hf:", "hf:a::b", "hf:a:b:c:d"):
        with pytest.raises(HaystackError, match="bad dataset spec"):
            parse_hf_spec(bad)


def test_hf_dataset_haystack_from_a_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"body": _prose(i, 3), "n": i} for i in range(5)]
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    stack = load_haystack(f"hf:{data}:train:body")
    assert stack.description == f"hf:{data}:train:body" and len(stack) == 15
    with pytest.raises(HaystackError, match="no column 'text'.*body"):
        load_haystack(f"hf:{data}")


def test_python_docs_is_the_default_and_deterministic() -> None:
    stack = load_haystack(None)
    assert stack.description.startswith("python-docs") and len(stack) > 1000
    assert sum(len(p) for p in stack.paragraphs) > 500_000  # enough for a 128k prompt
    assert load_haystack(None).paragraphs == stack.paragraphs


def test_split_paragraphs_normalises_filters_and_cuts() -> None:
    long_para = " ".join(["This sentence has exactly seven words."] * 30)
    prose = "  alpha  beta\n gamma delta epsilon zeta eta theta"
    code = "x = {a: b for a, b in zip(c, d)}; y[0] += f(x)"
    text = f"Short.\n\n{prose}\n\n{code}\n\n{long_para}"
    got = split_paragraphs(text, max_chars=100)
    assert got[0] == "alpha beta gamma delta epsilon zeta eta theta"
    # 38-character sentences, two to a 100-character piece: 30 sentences make 15 pieces.
    assert all(len(p) <= 100 for p in got[1:]) and len(got) == 1 + 15
    assert " ".join(got[1:]) == long_para


def test_sample_and_stream_wrap_around() -> None:
    stack = Haystack(tuple(f"paragraph number {i} " * 3 for i in range(4)), "test")
    stream = stack.stream(3)
    assert [next(stream) for _ in range(5)] == [3, 0, 1, 2, 3]
    run = stack.sample(random.Random(0), 10, lambda texts: [3 for _ in texts])
    assert len(run) == 4
