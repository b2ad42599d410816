"""Short-to-Long and key-chunk scoring: lengths, tags, depths, labels, whole distractors, resume."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import RELEASE
from typer.testing import CliRunner

from longrm.bench.construct import parse_lengths
from longrm.bench.haystack import load_haystack
from longrm.cli import app
from longrm.items import ItemError
from longrm.synth.code_haystack import stdlib_code_haystack, top_level_pieces
from longrm.synth.key_chunks import content_words, select_key_chunks, split_chunks
from longrm.synth.resume import OutputMismatchError, RowSink
from longrm.synth.short2long import (
    FitError,
    Padder,
    Short2LongConfig,
    parse_depths,
    run_settings,
    short2long,
)
from longrm.synth.short_rows import ShortRow, read_short_rows
from longrm.synth.templates import Templates, with_response

NEEDLE = "The access code of the Vormund vault is QX-4821, set by the keeper Ilsabet Marrow."
QUESTION = "What is the access code of the Vormund vault?"
ANSWER = "The access code of the Vormund vault is QX-4821."


@pytest.fixture(scope="module")
def haystack():  # type: ignore[no-untyped-def]
    return load_haystack(None)


def _padder(tokenizer: Any, haystack: Any, lengths: str, **kw: Any) -> Padder:
    variant = kw.get("variant", "qa")
    config = Short2LongConfig(lengths=tuple(parse_lengths(lengths)), **kw)
    return Padder(tokenizer, haystack, Templates.load(variant), config)


def _prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _context(row: dict[str, Any]) -> str:
    user = row["prompt_messages"][-1]["content"]
    return user[user.index("<context>\n") + 10 : user.rindex("\n</context>")]


def _docs(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return the distractor documents before and after the tagged block."""
    tag = row["tag"]
    block = f"<{tag}>{row['context']}</{tag}>"
    before, after = _context(row).split(block)
    split = [p for p in before.split("\n\n") if p], [p for p in after.split("\n\n") if p]
    return split


def _short_rows(tmp_path: Path, n: int = 6) -> Path:
    """Write n pointwise rows (with a score and an id) and n TRL rows with a context."""
    path = tmp_path / "short.jsonl"
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"p{i}",
                "context": f"Fact {i}: {NEEDLE} It opened in {1900 + i}.",
                "question": QUESTION,
                "response": ANSWER,
                "score": i % 10,
                "annotator": "me",
            }
        )
        rows.append(
            {
                "id": f"t{i}",
                "prompt": [{"role": "user", "content": f"When did vault {i} open?"}],
                "context": f"Vault {i} of the Vormund bank opened in {1900 + i}.",
                "chosen": [{"role": "assistant", "content": f"In {1900 + i}."}],
                "rejected": f"In {1800 + i}.",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Reading rows


def test_release_rows_read_with_their_tagged_span() -> None:
    read = read_short_rows(RELEASE)
    formats = [r.input_format for r in read.rows]
    assert formats.count("release-preference") == 20 and formats.count("release-sft") == 4
    for row in read.rows:
        if row.input_format == "release-sft":
            assert row.long_context and len(row.context) > 20_000 and "golden" in row.labels
            continue
        assert not row.long_context
        # The release keeps the short context apart too: the tagged span is it, newlines around.
        original = json.loads(
            Path(row.where).read_text(encoding="utf-8").splitlines()[row.line - 1]
        )
        assert row.context.strip() == original["context"].strip()
        assert row.responses == [original["answer"]] and row.question == original["query"]
        assert set(row.labels) == {
            "chosen",
            "rejects",
            "scores",
            "conf",
            "chosen_model",
            "reject_models",
        }


def test_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"context": "c " * 10, "question": "q?", "response": "r"}
    lines = [
        json.dumps(good),
        json.dumps({"prompt": "q?", "chosen": "a", "rejected": "b"}),
        json.dumps({**good, "response": ""}),
        "{not json",
        json.dumps({"text": "what am I"}),
        json.dumps({**good, "id": 7}),
        json.dumps({**good, "id": 7}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ItemError) as err:
        read_short_rows(path)
    assert str(err.value).startswith(f"{path}:2: field 'context'")
    read = read_short_rows(path, skip_invalid=True)
    assert [r.line for r in read.rows] == [1, 6]
    assert [(e.line, e.field) for e in read.skipped] == [
        (2, "context"),
        (3, "response"),
        (4, "<json>"),
        (5, "<row>"),
        (7, "id"),
    ]
    assert "duplicate id '7' (first at" in read.skipped[-1].message


def test_trl_and_pointwise_rows_keep_their_labels(tmp_path: Path) -> None:
    rows = read_short_rows(_short_rows(tmp_path, n=1)).rows
    point, trl = rows
    assert point.kind == "pointwise" and point.labels == {"score": 0}
    assert point.extra == {"id": "p0", "annotator": "me"}
    assert trl.kind == "pairwise" and trl.responses == ["In 1900.", "In 1800."]
    assert trl.labels == {
        "chosen": [{"role": "assistant", "content": "In 1900."}],
        "rejected": "In 1800.",
    }
    assert trl.question == "When did vault 0 open?"


# ---------------------------------------------------------------------------------------------
# Padding


def test_release_rows_padded_within_tolerance_span_exact_labels_unchanged(
    tokenizer: Any, haystack: Any
) -> None:
    rows = [r for r in read_short_rows(RELEASE).rows if not r.long_context]
    padder = _padder(tokenizer, haystack, "16k", seed=5, key_chunks="off")
    for i, row in enumerate(rows):
        out = padder.pad(row, i, "16k", 16384)
        n = _prompt_tokens(tokenizer, out["prompt_messages"])
        assert n == out["prompt_ctx_length"]
        assert 0.95 * 16384 <= n <= 16384
        tag = out["tag"]
        assert re.fullmatch(r"[A-Z0-9]{2,4}", tag)
        system, user = (m["content"] for m in out["prompt_messages"])
        assert f"<{tag}>" in system
        # The key span, byte for byte: the input's tagged span.
        spans = re.findall(f"<{tag}>(.*?)</{tag}>", user, re.S)
        assert spans == [row.context] and out["context"] == row.context
        # The tag occurs nowhere else: twice in the user message, never in the row's own texts.
        assert user.count(tag) == 2
        others = [row.context, row.question, *row.responses, json.dumps(out["labels"])]
        assert all(tag not in text for text in others)
        assert out["labels"] == row.labels and out["response"] == row.responses[0]
        assert out["question"] == row.question and f"<question>\n{row.question}" in user


def test_short_rows_depths_as_asked_and_documents_whole(
    tmp_path: Path, tokenizer: Any, haystack: Any
) -> None:
    rows = read_short_rows(_short_rows(tmp_path, n=3)).rows
    padder = _padder(tokenizer, haystack, "1k,2k", depth="0.1,0.5,0.9", seed=1)
    paragraphs = set(haystack.paragraphs)
    for i, row in enumerate(rows):
        for label, size in padder.config.lengths:
            out = padder.pad(row, i, label, size)
            assert out["depth_target"] == [0.1, 0.5, 0.9][i % 3]
            assert 0.95 * size <= out["prompt_ctx_length"] <= size
            before, after = _docs(out)
            assert len(before) == out["insert_index"]
            assert len(before) + len(after) == out["n_docs"]
            counts = [
                len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in before + after
            ]
            share = sum(counts[: len(before)]) / sum(counts)
            assert abs(share - out["depth"]) < 0.02  # the recorded depth is the real one
            assert abs(out["depth"] - out["depth_target"]) <= max(counts) / sum(counts)
            cut = [d for d in before + after if d not in paragraphs]
            assert len(cut) == out["cut_docs"] <= 1
            for doc in cut:  # a cut document is the start of one, ending a sentence
                assert doc[-1] in ".!?" and any(p.startswith(doc) for p in paragraphs)
            if row.kind == "pairwise":
                assert (out["chosen"], out["rejected"]) == tuple(row.responses)
                assert out["labels"] == row.labels


def test_padding_is_deterministic_with_a_seed(tokenizer: Any, haystack: Any) -> None:
    row = ShortRow("r1", "x.jsonl", 1, "pointwise", NEEDLE, QUESTION, [ANSWER])
    first = _padder(tokenizer, haystack, "2k", seed=7).pad(row, 0, "2k", 2048)
    again = _padder(tokenizer, haystack, "2k", seed=7).pad(row, 0, "2k", 2048)
    other = _padder(tokenizer, haystack, "2k", seed=8).pad(row, 0, "2k", 2048)
    assert first == again
    assert other["prompt_messages"] != first["prompt_messages"]


def test_uniform_depths_spread(tokenizer: Any, haystack: Any) -> None:
    padder = _padder(tokenizer, haystack, "1k", seed=2)
    rows = [ShortRow(f"u{i}", "x", i, "pointwise", NEEDLE, QUESTION, [ANSWER]) for i in range(12)]
    depths = [padder.pad(r, i, "1k", 1024)["depth_target"] for i, r in enumerate(rows)]
    assert min(depths) < 0.3 and max(depths) > 0.7 and len(set(depths)) == 12


def test_a_key_context_longer_than_the_target_is_refused(tokenizer: Any, haystack: Any) -> None:
    row = ShortRow("big", "x", 1, "pointwise", " ".join([NEEDLE] * 60), QUESTION, [ANSWER])
    with pytest.raises(FitError, match="alone take"):
        _padder(tokenizer, haystack, "512", key_chunks="off").pad(row, 0, "512", 512)


def test_code_variant_distractors_parse(tokenizer: Any) -> None:
    code = stdlib_code_haystack()
    assert all(piece.startswith("# from ") for piece in code.paragraphs[:50])
    snippet = "def area(w, h):\n    return w * h\n"
    row = ShortRow("c", "x", 1, "pointwise", snippet, "What does area return?", ["w times h"])
    padder = Padder(
        tokenizer,
        code,
        Templates.load("code"),
        Short2LongConfig(lengths=(("2k", 2048),), variant="code"),
    )
    out = padder.pad(row, 0, "2k", 2048)
    assert 0.95 * 2048 <= out["prompt_ctx_length"] <= 2048 and out["cut_docs"] == 0
    tag = out["tag"]
    context = _context(out)
    assert f"<{tag}>{snippet}</{tag}>" in context
    docs = re.split(r"\n\n(?=# from )", context.replace(f"<{tag}>{snippet}</{tag}>", ""))
    docs = [d.strip("\n") for d in docs if d.strip()]
    assert len(docs) == out["n_docs"] >= 2
    for doc in docs:
        ast.parse(doc)
    assert "hidden in a long, unrelated code base" in out["prompt_messages"][0]["content"]


def test_top_level_pieces_keep_decorators_and_drop_module_code() -> None:
    source = "import os\nX = 1\n\n@staticmethod\ndef f():\n" + "    y = 1\n" * 20 + "\nprint(X)\n"
    pieces = top_level_pieces(source, "m.py")
    assert len(pieces) == 1 and pieces[0].startswith("# from m.py\n@staticmethod\ndef f():")
    ast.parse(pieces[0])


def test_templates_override_and_response_block(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('qa_system = "Judge only <{tag}>."\n', encoding="utf-8")
    templates = Templates.load("qa", path)
    messages = templates.messages("AB1", "ctx {question}", "Why?")
    assert messages[0]["content"] == "Judge only <AB1>."
    assert messages[1]["content"].startswith("<context>\nctx {question}\n</context>")
    full = with_response(messages, "Because.")
    assert full[1]["content"].endswith("<response>\nBecause.\n</response>")
    assert full[0] == messages[0]
    path.write_text('qa_system = "no tag here"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="lacks"):
        Templates.load("qa", path)
    assert "<AB1>" in Templates.load("summary").messages("AB1", "c", "")[1]["content"]


def test_parse_depths() -> None:
    assert parse_depths("uniform") is None
    assert parse_depths("0.1, 0.5,0.9") == [0.1, 0.5, 0.9]
    for bad in ("1.5", "x", ""):
        with pytest.raises(ValueError):
            parse_depths(bad)


# ---------------------------------------------------------------------------------------------
# Key chunks


def _long_text(haystack: Any, needle_at: int, n: int = 60) -> str:
    paragraphs = list(haystack.paragraphs[100 : 100 + n])
    paragraphs.insert(needle_at, NEEDLE)
    return "\n\n".join(paragraphs)


def test_key_chunk_scoring_keeps_the_chunk_with_the_answer(tokenizer: Any, haystack: Any) -> None:
    from longrm.bench.fit import TokenCounter

    count = TokenCounter(tokenizer, haystack).counts
    text = _long_text(haystack, needle_at=37)
    chunks = select_key_chunks(
        text, QUESTION, ANSWER, tokenizer, count, budget=1024, chunk_tokens=256, top_k=2
    )
    assert len(chunks.chunks) >= 10 and chunks.methods == {"question": "bm25", "answer": "bm25"}
    best = max(chunks.chunks, key=lambda c: c.score)
    assert NEEDLE in best.text and best.kept and best.score == 1.0
    assert "always kept" in best.why
    assert all(c.tokens <= 256 + 8 for c in chunks.chunks)
    assert 1 <= len(chunks.kept) <= 2 and NEEDLE in chunks.short_context()
    assert NEEDLE not in "".join(chunks.distractors())
    record = chunks.record()
    assert record["kept"] == chunks.kept and all("text" not in c for c in record["chunks"])
    assert all(c["why"] for c in record["chunks"])


def test_overlap_fallback_and_cjk_words(tokenizer: Any, haystack: Any) -> None:
    from longrm.bench.fit import TokenCounter

    count = TokenCounter(tokenizer, haystack).counts
    # One chunk only: BM25 cannot rank, content-word overlap scores it.
    one = select_key_chunks(NEEDLE, QUESTION, "", tokenizer, count, budget=100)
    assert one.methods == {"question": "overlap"} and one.chunks[0].overlap_question > 0.5
    # A question without content words leaves only the answer to score with.
    text = _long_text(haystack, needle_at=3, n=20)
    some = select_key_chunks(text, "Is it?", ANSWER, tokenizer, count, budget=600, chunk_tokens=128)
    assert set(some.methods) == {"answer"} and NEEDLE in some.short_context()
    assert content_words("草鱼养殖") == ["草鱼", "鱼养", "养殖"]
    assert content_words("The vault of Vormund") == ["vault", "vormund"]


def test_split_chunks_cuts_a_long_paragraph_at_sentences(tokenizer: Any, haystack: Any) -> None:
    from longrm.bench.fit import TokenCounter

    count = TokenCounter(tokenizer, haystack).counts
    sentences = [f"Sentence number {i} says something about vaults." for i in range(80)]
    chunks = split_chunks(" ".join(sentences), tokenizer, count, chunk_tokens=64)
    assert len(chunks) > 5 and all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == " ".join(sentences)


def test_long_release_row_is_reduced_to_key_chunks(tokenizer: Any, haystack: Any) -> None:
    rows = read_short_rows(RELEASE / "sft-test.jsonl").rows
    row = min(rows, key=lambda r: len(r.context))
    out = _padder(tokenizer, haystack, "4k", seed=0).pad(row, 0, "4k", 4096)
    kc = out["key_chunks"]
    assert kc is not None and kc["kept"] and len(kc["chunks"]) > len(kc["kept"])
    assert out["short_tokens"] <= 2048 and out["own_docs"] >= 1
    assert 0.95 * 4096 <= out["prompt_ctx_length"] <= 4096
    assert out["labels"]["golden"] == row.labels["golden"]
    assert f"<{out['tag']}>{out['context']}</{out['tag']}>" in _context(out)


# ---------------------------------------------------------------------------------------------
# Runs: resume, settings, CLI


def test_resume_continues_without_duplicates(tmp_path: Path, tokenizer: Any, haystack: Any) -> None:
    rows = read_short_rows(_short_rows(tmp_path, n=2)).rows
    padder = _padder(tokenizer, haystack, "512,1k", seed=4)
    settings = run_settings(
        padder.config, input_fingerprint="x", model="default", haystack="h",
        templates=padder.templates,
    )  # fmt: skip
    full = tmp_path / "full.jsonl"
    short2long(rows, padder, RowSink(full, settings))
    expected = full.read_text(encoding="utf-8").splitlines()
    assert len(expected) == 8 and len({json.loads(x)["id"] for x in expected}) == 8
    # A run cut short: three rows and a torn fourth.
    part = tmp_path / "part.jsonl"
    part.write_text("\n".join(expected[:3]) + "\n" + expected[3][:50], encoding="utf-8")
    RowSink(full, settings)  # equal settings reopen
    part.with_suffix(".settings.json").write_text(
        full.with_suffix(".settings.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    summary = short2long(rows, padder, RowSink(part, settings))
    assert sum(s.resumed for s in summary.lengths.values()) == 3
    assert sum(s.written for s in summary.lengths.values()) == 5
    got = part.read_text(encoding="utf-8").splitlines()
    assert sorted(got) == sorted(expected)
    with pytest.raises(OutputMismatchError, match="seed"):
        RowSink(part, {**settings, "seed": 5})


def test_cli_end_to_end_and_bad_input(tmp_path: Path) -> None:
    src = _short_rows(tmp_path, n=2)
    out = tmp_path / "padded"
    args = ["synth", "short2long", "--in", str(src), "--out", str(out), "--lengths", "512,1k"]
    result = CliRunner().invoke(app, [*args, "--depth", "0.5"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "512: 4 written, 0 resumed, 0 skipped" in result.output
    assert (
        "1k: 4 written" in result.output and "reproduce: longrm synth short2long" in result.output
    )
    import datasets

    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 8 and set(ds["length_bucket"]) == {"512", "1k"}
    assert set(ds["depth_target"]) == {0.5}
    again = CliRunner().invoke(app, [*args, "--depth", "0.5"])
    assert again.exit_code == 0 and "512: 0 written, 4 resumed" in again.output
    refused = CliRunner().invoke(app, [*args, "--depth", "0.9"])
    assert refused.exit_code == 2 and "other settings" in refused.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    failed = CliRunner().invoke(
        app, ["synth", "short2long", "--in", str(bad), "--out", str(tmp_path / "x.jsonl")]
    )
    assert failed.exit_code == 2 and f"{bad}:1: field 'context'" in failed.output
