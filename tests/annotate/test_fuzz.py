"""Fuzzing the JSONL reader and writer of `annotate`: whatever the lines hold (random JSON
values, random Unicode with lone surrogates, random bytes, truncated lines), there is one
record per document line and every output line is strict JSON."""
import json
import tempfile
from pathlib import Path

import pytest
import spacy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spacy_rnn_ner.annotate import annotate
from spacy_rnn_ner.annotate.io import json_line

from tests.helpers import read_strict_jsonl, strict_json

# Any code point, lone surrogates included, and then some more lone surrogates.
CHARS = st.characters(exclude_categories=()) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
TEXT = st.text(CHARS, max_size=20)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)


@pytest.fixture(scope="module")
def blank_nlp():
    """A tokenizer-only pipeline: these tests check the reader and writer, not the tagger."""
    return spacy.blank("en")


@st.composite
def json_lines(draw) -> bytes:
    """One input line: JSON (escaped or raw, maybe invalid UTF-8), hostile JSON, or random bytes."""
    kind = draw(st.sampled_from(["object", "value", "deep", "long-int", "bytes"]))
    if kind == "object":
        obj = {"text": draw(TEXT | SCALARS)}
        if draw(st.booleans()):
            obj["meta"] = draw(VALUES)
        if draw(st.booleans()):
            obj["id"] = draw(VALUES)
        text = json.dumps(obj, ensure_ascii=draw(st.booleans()), allow_nan=True)
        line = text.encode("utf8", errors="surrogatepass")  # a raw surrogate gives bytes that are not UTF-8
    elif kind == "value":
        line = json.dumps(draw(VALUES), allow_nan=True).encode("utf8")
    elif kind == "deep":
        depth = draw(st.sampled_from([99, 100, 101, 1000, 100_000]))
        line = b'{"text": "x", "meta": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "long-int":
        line = b'{"text": "x", "id": ' + b"9" * draw(st.sampled_from([4300, 4301, 5000])) + b"}"
    else:
        line = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        line = line[: draw(st.integers(0, len(line)))]  # a truncated line
    return line.replace(b"\n", b" ")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(json_lines(), min_size=1, max_size=6))
@example(lines=[b"\xef\xbb\xbf"])
@example(lines=[b"\xef\xbb\xbf{\"text\": \"x\"}", b"\xef\xbb\xbf"])
def test_every_line_gives_one_strict_json_record(blank_nlp, lines):
    # A JSONL line of JSON whitespace is no document; a byte-order mark at the very start is the file's.
    shown = [lines[0][3:] if lines[0].startswith(b"\xef\xbb\xbf") else lines[0]] + lines[1:]
    documents = [line for line in shown if line.strip(b" \t\r")]
    data = b"".join(line + b"\n" for line in lines)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_bytes(data)
        stats = annotate(blank_nlp, src, out, progress=False, batch_size=2)
        records = read_strict_jsonl(out)  # strict UTF-8, no NaN/Infinity, no lone surrogates
        # A UTF-8 byte-order mark changes nothing (unless the data starts with one already:
        # then the first is the file's mark, and the second is a character of the first line).
        if not data.startswith(b"\xef\xbb\xbf"):
            src.write_bytes(b"\xef\xbb\xbf" + data)
            annotate(blank_nlp, src, Path(tmp) / "bom.jsonl", progress=False, batch_size=2)
            assert (Path(tmp) / "bom.jsonl").read_bytes() == out.read_bytes()
    assert len(records) == len(documents) == stats.docs
    assert [r["index"] for r in records] == list(range(len(documents)))
    assert all(("ents" in r) != ("error" in r) for r in records)


@settings(max_examples=60, deadline=None)
@given(meta=VALUES, ident=VALUES, error=TEXT)
def test_json_line_is_strict_json_for_any_values(meta, ident, error):
    for record in ({"index": 0, "meta": meta, "id": ident, "ents": []}, {"index": 1, "line": 2, "error": error}):
        line = json_line(record)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        value = strict_json(line.decode("utf8"))
        assert value["index"] == record["index"]
