"""The by-construction benchmark builder: sizes, labels that hold, schema, haystack sources."""

from __future__ import annotations

import itertools
import json
import random
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from longrm.bench.construct import (
    FAMILIES,
    FORMATS,
    TIER_SCORES,
    TIER_VALUES,
    TIERS,
    build_suite,
    parse_lengths,
)
from longrm.bench.haystack import (
    Haystack,
    HaystackError,
    load_haystack,
    parse_hf_spec,
    split_paragraphs,
)
from longrm.bench.manifest import (
    MANIFEST,
    ManifestError,
    build_manifest,
    check_manifest,
    write_manifest,
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
    cells = Counter(
        (i.length_bucket, i.task, i.n if i.subtype.isdigit() else "pair") for i in suite
    )
    assert {t for _, t, _ in cells} == set(FAMILIES)
    assert {b for b, _, _ in cells} == set(SIZES)
    assert {s for _, _, s in cells} == {"pair", 2, 3, 4}
    assert set(cells.values()) == {2}
    assert len(suite) == len(SIZES) * len(FAMILIES) * len(FORMATS) * 2


def test_rows_follow_the_official_schema(suite: list[Item]) -> None:
    for item in suite:
        n = len(item.candidates)
        if item.tasktype == PAIRWISE:
            assert item.subtype in ("same", "cross") and item.subtype == item.extra["wording"]
            assert n == 2 and item.candidate_scores is None
        else:
            assert item.tasktype == BEST_OF_N and n == int(item.subtype)
            assert item.extra["wording"] in ("same", "cross")
            scores = item.candidate_scores or []
            assert scores == [TIER_SCORES[t] for t in item.candidate_models]
            assert all(a > b for a, b in itertools.pairwise(scores))
        assert item.subtask == ">".join(item.candidate_models)
        assert len(set(item.candidates)) == n
        assert item.source.startswith("python-docs")
        assert item.prompt[0]["role"] == "user" and len(item.prompt) == 1
        assert item.question in _content(item)
        assert item.words_count == len(_content(item).split())
    keys = [i.key for i in suite]
    assert len(keys) == len(set(keys))


def test_round_trip_through_task_files(suite: list[Item], tmp_path: Path) -> None:
    written = write_items(suite, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{f}.jsonl" for f in FAMILIES)
    first = json.loads(written[0].read_text().splitlines()[0])
    assert first["ctx_length_for_length"] in SIZES and isinstance(first["length"], int)
    loaded = load_items(tmp_path)
    assert not loaded.skipped
    # `origin` (the file a row came from) is set by reading only
    assert {i.key: _fields(i) for i in loaded.items} == {i.key: _fields(i) for i in suite}
    assert {getattr(i, "origin", i.task) for i in loaded.items} == set(FAMILIES)


def _fields(item: Item) -> dict[str, Any]:
    return {k: v for k, v in vars(item).items() if k != "origin"}


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
        # a mirrored family's second items repeat their twin's choices: count the twins
        mine = [i for i in suite if i.task == family and not i.extra.get("mirrored")]
        kinds = Counter(i.extra["wrong_kind"] for i in mine)
        assert abs(kinds["contradicted"] - kinds["invented"]) <= 4, (family, kinds)
        wordings = Counter(i.extra["wording"] for i in mine)
        assert abs(wordings["same"] - wordings["cross"]) <= 4, (family, wordings)
        pairs = Counter(i.subtask for i in mine if i.tasktype == PAIRWISE)
        n_pairs = sum(1 for i in mine if i.tasktype == PAIRWISE)
        assert len(pairs) == min(6, n_pairs), (family, pairs)  # every pair of tiers in turn
        bon3 = Counter(i.subtask for i in mine if i.n == 3 and i.tasktype == BEST_OF_N)
        assert len(bon3) == 4, (family, bon3)


def test_pair_tier_combinations_and_wordings_are_balanced(tokenizer: Any) -> None:
    items = build_suite(
        tokenizer, lengths="512", families=["single_fact"], items_per_cell=24, formats=["pairwise"]
    )
    cells = Counter((i.subtask, i.subtype) for i in items)
    # 6 tier pairs x 2 wordings, twice each: neither wording half holds a different mix of tiers
    assert len(cells) == 12 and set(cells.values()) == {2}, cells
    kinds = Counter((i.subtype, i.extra["wrong_kind"]) for i in items)
    assert set(kinds.values()) == {6}, kinds


# ---------------------------------------------------------------------------------------------
# Every candidate has the same shape; quality is a 2x2 factorial of its two claims


def _mask(text: str, values: list[str]) -> str:
    """Return text with each value (as a whole token) replaced by a placeholder."""
    for k, value in enumerate(values):
        text = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", f"<{k}>", text, count=1)
    return text


def _has(text: str, value: str) -> int:
    """Return how often `value` occurs in text as a whole token."""
    return len(re.findall(rf"(?<![\w-]){re.escape(value)}(?![\w-])", text))


def test_tiers_are_ordered_by_construction(suite: list[Item]) -> None:
    for item in suite:
        extra = item.extra
        right = (extra["answer"], extra["side_answer"])
        wrong = (extra["wrong_value"], extra["side_wrong_value"])
        assert len({*right, *wrong}) == 4, (item.key, right, wrong)  # no value repeats
        keys = []
        for tier, values, text in zip(
            item.candidate_models, extra["candidate_values"], item.candidates, strict=True
        ):
            main_ok, side_ok = TIER_VALUES[tier]
            assert values == [right[0] if main_ok else wrong[0], right[1] if side_ok else wrong[1]]
            assert values[0] != values[1]
            # each value once, the main claim's before the side claim's
            assert [_has(text, v) for v in values] == [1, 1], (item.key, text, values)
            assert _mask(text, values).index("<0>") < _mask(text, values).index("<1>")
            # no other value of the item slips into a candidate
            assert not any(_has(text, v) for v in {*right, *wrong} - set(values)), text
            keys.append((main_ok, side_ok))
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)


def test_values_are_shared_so_no_majority_gives_the_answer_away(suite: list[Item]) -> None:
    for item in suite:
        values = [tuple(v) for v in item.extra["candidate_values"]]
        if item.n == 4:
            uses = Counter(v for pair in values for v in pair)
            assert set(uses.values()) == {2}, (item.key, uses)
        if item.n == 2:
            assert len(set(values[0]) & set(values[1])) <= 1


def test_same_wording_differs_only_in_the_values(suite: list[Item]) -> None:
    seen = Counter()
    for item in suite:
        masked = {
            _mask(text, values)
            for text, values in zip(item.candidates, item.extra["candidate_values"], strict=True)
        }
        seen[item.extra["wording"], len(masked) == 1] += 1
        if item.extra["wording"] == "same":
            assert len(masked) == 1, (item.key, masked)
    assert seen["cross", False] > seen["cross", True]  # cross wording mostly differs


def test_candidate_lengths_do_not_give_the_tier_away(suite: list[Item]) -> None:
    chars: dict[str, list[int]] = {}
    for item in suite:
        for name, text in zip(item.candidate_models, item.candidates, strict=True):
            chars.setdefault(name, []).append(len(text))
    means = {tier: statistics.mean(v) for tier, v in chars.items()}
    assert set(means) == set(TIERS)
    assert max(means.values()) / min(means.values()) < 1.06, means


# ---------------------------------------------------------------------------------------------
# The values hold against each family's own context


def _check_invented(item: Item) -> None:
    """Absent terms are nowhere in the context; every other invented string is planted in it."""
    context = _context(item).lower()
    absent = item.extra["absent_terms"]
    assert set(absent) <= set(item.extra["invented"])
    for term in item.extra["invented"]:
        assert (term.lower() in context) == (term not in absent), (item.key, term)


def test_single_fact_needle_distractor_and_side_entry(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "single_fact"):
        context, extra = _context(item), item.extra
        answer, side = extra["answer"], extra["side_answer"]
        for fact in (extra["needle"], extra["distractor"], extra["side_fact"]):
            assert context.count(fact) == 1
        assert context.count(answer) == 1 and answer in extra["needle"]
        assert extra["subject"] in extra["needle"] and extra["subject"] in item.question
        assert context.count(side) == 1 and side in extra["side_fact"]
        assert extra["side_subject"] in extra["side_fact"]
        _check_invented(item)
        w = extra["wrong_value"]
        if extra["wrong_kind"] == "contradicted":  # the context gives it to another subject
            assert w in extra["distractor"] and context.count(w) == 1
        else:
            assert w not in context
        assert extra["side_wrong_value"] not in context
        for text in item.candidates:
            # the main claim is about the subject asked for, the side claim about the side entry
            masked = _mask(text, [extra["subject"], extra["side_subject"]])
            assert masked.index("<0>") < masked.index("<1>"), text


def test_single_fact_depth_is_where_the_needle_is(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "single_fact" and i.length_bucket == "8k"):
        context = _context(item)
        at = context.index(item.extra["needle"]) / len(context)
        assert abs(at - item.extra["depth"]) < 0.1, (item.key, at, item.extra["depth"])


def test_multi_hop_chain_is_planted_and_resolves(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "multi_hop"):
        context, extra = _context(item), item.extra
        chain, facts, values = extra["chain"], extra["chain_facts"], extra["chain_values"]
        assert len(facts) == extra["hops"] == len(chain) == len(values)
        for fact in facts:
            assert context.count(fact) == 1
        for a, b, fact in zip(chain, chain[1:], facts, strict=False):  # each link names both ends
            assert a in fact and b in fact
        assert chain[-1] in facts[-1] and facts[-1].endswith(f"{extra['answer']}.")
        assert values[-1] == extra["answer"]
        assert item.question.count(" of ") == extra["hops"] and chain[0] in item.question
        _check_invented(item)
        # the side claim restates one link: its right person, or a look-alike planted elsewhere
        link = extra["side_link"]
        assert extra["side_answer"] == chain[link + 1]
        assert extra["side_wrong_value"] == extra["look_alike"] not in chain
        assert context.count(extra["look_alike_fact"]) == 1
        assert extra["look_alike"] in extra["look_alike_fact"]
        assert chain[link] not in extra["look_alike_fact"]
        for text in item.candidates:
            assert chain[link] in text
        w = extra["wrong_value"]
        if extra["wrong_kind"] == "contradicted":  # stops one hop short
            assert w == values[-2]
            assert any(chain[-2] in p and w in p for p in context.split("\n\n"))
        else:
            assert w not in context


def _docs(item: Item) -> dict[int, str]:
    parts = re.split(r"^\[Doc (\d+)\]\n", _context(item), flags=re.M)
    assert parts[0] == ""
    return {int(k): body for k, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_citation_cites_the_document_that_holds_the_claim(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "citation"):
        docs, extra = _docs(item), item.extra
        assert sorted(docs) == list(range(1, extra["n_docs"] + 1))
        assert [k for k, b in docs.items() if extra["needle"] in b] == [extra["doc"]]
        assert [k for k, b in docs.items() if extra["distractor"] in b] == [extra["distractor_doc"]]
        assert extra["answer"] in extra["needle"] and extra["subject"] in extra["needle"]
        assert extra["side_answer"] == str(extra["doc"])
        assert extra["side_wrong_value"] == str(extra["distractor_doc"])
        _check_invented(item)
        w = extra["wrong_value"]
        if extra["wrong_kind"] == "contradicted":
            assert w in docs[extra["distractor_doc"]] and w in extra["distractor"]
        else:
            assert w not in _context(item)
        for text, (main, side) in zip(
            item.candidates, extra["candidate_values"], strict=True
        ):  # one citation, of the document the candidate's side value names
            assert re.findall(r"\[Doc (\d+)\]", text) == [side]
            assert text.index(main) < text.index("[Doc")


def _shown(item: Item) -> tuple[set[str], set[str]]:
    """Return the values only the better answer states and those only the worse one states."""
    better, worse = (set(v) for v in item.extra["candidate_values"])
    return better - worse, worse - better


def test_counting_twins_mirror_their_counts(tokenizer: Any) -> None:
    items = build_suite(
        tokenizer, lengths="512", families=["counting"], items_per_cell=24, formats=["pairwise"]
    )
    assert [i.extra["mirrored"] for i in items] == [False, True] * 12
    for first, second in zip(items[::2], items[1::2], strict=True):
        a, b = first.extra, second.extra
        assert (first.subtask, first.subtype, a["wrong_kind"]) == (
            second.subtask, second.subtype, b["wrong_kind"]
        )  # fmt: skip
        assert (b["answer"], b["side_answer"]) == (a["wrong_value"], a["side_wrong_value"])
        assert (b["wrong_value"], b["side_wrong_value"]) == (a["answer"], a["side_answer"])
        assert _shown(second) == _shown(first)[::-1]
    # every count is stated by the better answer alone exactly as often as by the worse alone,
    # so a scorer that picks the answer holding its favourite number scores 50% on every twin
    for favourite in map(str, range(2, 8)):
        better = sum(favourite in _shown(item)[0] for item in items)
        worse = sum(favourite in _shown(item)[1] for item in items)
        assert better == worse, (favourite, better, worse)
    # the twins still cover all six pairs of tiers in both wordings
    assert len(Counter((i.subtask, i.subtype) for i in items)) == 12


def test_counting_counts_equal_planted_mentions(suite: list[Item]) -> None:
    for item in (i for i in suite if i.task == "counting"):
        context, extra = _context(item), item.extra
        k = extra["count"]
        assert context.count(extra["marker"]) == k == len(extra["depths"])
        assert context.count(extra["distractor_marker"]) == extra["distractor_count"]
        assert context.count(extra["side_marker"]) == extra["side_count"]
        assert extra["answer"] == str(k) and extra["side_answer"] == str(extra["side_count"])
        numbers = {k, extra["distractor_count"], extra["side_count"]}
        numbers |= {int(extra["wrong_value"]), int(extra["side_wrong_value"])}
        assert len(numbers) == 4 + (extra["wrong_kind"] == "invented")
        if extra["wrong_kind"] == "contradicted":  # the look-alike event's count
            assert int(extra["wrong_value"]) == extra["distractor_count"]
        _check_invented(item)
        for text, (main, side) in zip(item.candidates, extra["candidate_values"], strict=True):
            # digits and "times" always: "once" would make a tier shorter
            assert f" {main} times" in text and f" {side} times" in text and "once" not in text
            masked = _mask(text, [item.extra["marker"].split()[0], main, side])
            assert masked.index("<0>") < masked.index("<1>") < masked.index("<2>")


# ---------------------------------------------------------------------------------------------
# The manifest


def test_manifest_records_the_build_and_catches_changes(
    tokenizer: Any, suite: list[Item], tmp_path: Path
) -> None:
    items = [i for i in suite if i.length_bucket == "512"]
    files = write_items(items, tmp_path)
    stack = load_haystack(None)
    manifest = build_manifest(
        files,
        seed=7,
        lengths=[("512", 512)],
        families=list(FAMILIES),
        formats=list(FORMATS),
        per_cell=2,
        model="default",
        tokenizer_name=tokenizer.name_or_path,
        haystack=stack,
    )
    write_manifest(tmp_path, manifest)
    assert manifest["items"] == len(items) and len(manifest["files"]) == len(FAMILIES)
    assert manifest["haystack"]["description"] == stack.description
    assert manifest["python_version"] and manifest["longrm_version"]
    assert check_manifest(tmp_path) == json.loads((tmp_path / MANIFEST).read_text())
    assert check_manifest(tmp_path / "nowhere") is None
    # a changed byte names its file
    target = tmp_path / "counting.jsonl"
    original = target.read_bytes()
    target.write_bytes(original.replace(b'"length": ', b'"length":  ', 1))
    with pytest.raises(ManifestError, match=r"counting\.jsonl: changed since it was built"):
        check_manifest(tmp_path)
    target.write_bytes(original)
    (tmp_path / "extra.jsonl").write_text("")
    with pytest.raises(ManifestError, match=r"extra\.jsonl: a task file manifest.json does not"):
        check_manifest(tmp_path)
    (tmp_path / "extra.jsonl").unlink()
    (tmp_path / "citation.jsonl").unlink()
    with pytest.raises(ManifestError, match=r"citation\.jsonl: listed in manifest.json but"):
        check_manifest(tmp_path)


def test_cli_build_writes_a_manifest_that_check_verifies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from longrm.cli import app

    out = tmp_path / "bench"
    runner = CliRunner()
    args = ["--out", str(out), "--lengths", "512", "--formats", "pairwise", "--seed", "5"]
    built = runner.invoke(app, ["bench", "build", *args, "--tasks", "counting,citation"])
    assert built.exit_code == 0, built.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["seed"] == 5 and manifest["families"] == ["counting", "citation"]
    assert manifest["formats"] == ["pairwise"] and manifest["lengths"] == [["512", 512]]
    assert manifest["tokenizer"]["model"] == "default" and manifest["items"] == 2
    assert manifest["haystack"]["description"].startswith("python-docs")
    assert len(manifest["haystack"]["sha256"]) == 64
    checked = runner.invoke(app, ["bench", "check", str(out)])
    assert checked.exit_code == 0 and "manifest: ok" in checked.output, checked.output
    rows = (out / "citation.jsonl").read_text().splitlines()
    (out / "citation.jsonl").write_text("\n".join(rows + rows[:1]) + "\n")
    failed = runner.invoke(app, ["bench", "check", str(out)])
    assert failed.exit_code == 2 and "citation.jsonl" in failed.output, failed.output


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
