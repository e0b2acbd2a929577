"""`annotate` in-process against hostile input, bad options and unsafe outputs (the CLI's
messages and exit codes: tests/integration/test_annotate_cli.py)."""
import errno
import json
import os
import re

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import DocBin

from spacy_rnn_ner.annotate import (
    BadLineError,
    InputOutputError,
    OptionError,
    PipelineError,
    annotate,
)
from spacy_rnn_ner.annotate.io import json_line, resume_file

from tests.helpers import TEXTS, annotate_to, corpus, read_strict_jsonl, strict_json, write_lines

GOOD = json.dumps({"text": TEXTS[0]})
DEEP = '{"text": "Lyon .", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"


def run(nlp, lines, tmp_path, **kwargs):
    """Annotate JSONL `lines` (str or bytes) with a loaded pipeline; return the strict-JSON records."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join((line.encode("utf8") if isinstance(line, str) else line) + b"\n" for line in lines))
    out = tmp_path / "out.jsonl"
    annotate(nlp, src, out, progress=False, **kwargs)
    return read_strict_jsonl(out)


@pytest.mark.parametrize(
    "line,error",
    [
        ('{"text": "Lyon \\ud800 Paris"}', "lone surrogate (\\ud800) at character 5"),
        (DEEP, "nested deeper than 100 levels"),
        ('{"text": "Lyon .", "id": ' + "7" * 5000 + "}", "a number of 5,000 digits"),
        ('{"text": "Lyon .", "meta": {"a": [[[[' + "[" * 100 + "]" * 104 + "}}", "nested deeper than 100 levels"),
    ],
    ids=["surrogate-in-text", "meta-100000-deep", "int-id-5000-digits", "meta-105-deep"],
)
def test_hostile_line_gives_an_error_record_and_the_run_goes_on(trained_nlp, tmp_path, line, error):
    records = run(trained_nlp, [GOOD, line, GOOD], tmp_path)
    assert [r["index"] for r in records] == [0, 1, 2]
    assert error in records[1]["error"] and records[1]["line"] == 2
    assert records[0]["ents"] and records[2] == {**records[0], "index": 2, "line": 3}


def test_lone_surrogates_in_meta_and_id_are_written_as_replacement_characters(trained_nlp, tmp_path):
    line = '{"text": "Angela Moreau flew from Lyon .", "id": "a\\udc00", "meta": {"k\\ud800": ["\\udfff", "ok \\ud83d\\ude00"]}}'
    records = run(trained_nlp, [line], tmp_path)
    assert records[0]["id"] == "a\ufffd"
    assert records[0]["meta"] == {"k\ufffd": ["\ufffd", "ok \U0001F600"]}  # a valid pair stays one character
    assert records[0]["ents"]


def test_nan_and_infinity_in_meta_are_written_as_null(trained_nlp, tmp_path):
    records = run(trained_nlp, ['{"text": "Lyon .", "meta": {"a": NaN, "b": [Infinity, -Infinity, 1e999, 1.5]}}'], tmp_path)
    assert records[0]["meta"] == {"a": None, "b": [None, None, None, 1.5]}
    assert "NaN" not in (tmp_path / "out.jsonl").read_text()


def test_byte_order_mark_at_the_start_is_accepted(trained_nlp, tmp_path):
    records = run(trained_nlp, [b"\xef\xbb\xbf" + GOOD.encode(), GOOD], tmp_path)
    assert all("error" not in r for r in records) and records[0]["ents"] == records[1]["ents"]
    src = tmp_path / "in.txt"
    src.write_bytes(b"\xef\xbb\xbf" + TEXTS[0].encode() + b"\n")
    annotate(trained_nlp, src, tmp_path / "t.jsonl", include_text=True, progress=False)
    assert read_strict_jsonl(tmp_path / "t.jsonl")[0]["text"] == TEXTS[0]


def test_a_hostile_line_at_700_of_1000_loses_nothing(trained_nlp, tmp_path):
    lines = [json.dumps({"text": f"Tomas Berg visited Lyon {i} ."}) for i in range(1000)]
    lines[699] = DEEP
    records = run(trained_nlp, lines, tmp_path, batch_size=64)
    assert [r["index"] for r in records] == list(range(1000))
    assert [i for i, r in enumerate(records) if "error" in r] == [699]


def test_strict_stops_at_a_hostile_line_and_resume_gets_past_it(trained_nlp, tmp_path):
    lines = [json.dumps({"text": f"Tomas Berg visited Lyon {i} ."}) for i in range(300)]
    lines[200] = '{"text": "Lyon \\ud800"}'
    src = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    with pytest.raises(BadLineError, match="line 201: the text holds a lone surrogate"):
        annotate(trained_nlp, src, out, strict=True, batch_size=32, progress=False)
    assert [r["index"] for r in read_strict_jsonl(out)] == list(range(200))
    # --resume --strict stops at the same line again, and writes nothing twice.
    with pytest.raises(BadLineError, match="line 201"):
        annotate(trained_nlp, src, out, strict=True, resume=True, batch_size=32, progress=False)
    assert len(read_strict_jsonl(out)) == 200
    stats = annotate(trained_nlp, src, out, resume=True, batch_size=32, progress=False)
    records = read_strict_jsonl(out)
    assert stats.skipped == 200 and stats.docs == 100 and stats.errors == 1
    assert [r["index"] for r in records] == list(range(300)) and "lone surrogate" in records[200]["error"]


@pytest.mark.parametrize(
    "options,match",
    [
        ({"batch_size": 0}, "--batch-size must be a whole number of at least 1, not 0"),
        ({"batch_size": -5}, "--batch-size must be a whole number of at least 1, not -5"),
        ({"n_process": 0}, "--n-process must be a whole number of at least 1, not 0"),
        ({"partition_size": 0}, "--partition-size must be"),
        ({"dask_address": "local:0"}, "local:N needs a number of workers of at least 1"),
        ({"dask_address": "local:two"}, "local:N needs a number of workers"),
        ({"dask_address": "tcp://scheduler"}, "is not a Dask scheduler address"),
        ({"dask_address": "tcp://host:99999"}, "is not a Dask scheduler address"),
        ({"dask_address": "http://host:8786"}, "is not a Dask scheduler address"),
        ({"dask_address": "local:2", "dask_timeout": 0}, "--dask-timeout must be a positive number"),
        ({"input_format": "csv"}, "Unknown format 'csv'"),
    ],
)
def test_bad_options_are_refused_before_anything_is_loaded_or_written(tmp_path, options, match):
    src = write_lines(tmp_path / "in.txt", TEXTS[:3])
    out = tmp_path / "out.jsonl"
    out.write_text("earlier output\n")
    with pytest.raises(OptionError, match=re.escape(match)):
        annotate(tmp_path / "no-such-pipeline", src, out, progress=False, **options)
    assert out.read_text() == "earlier output\n"


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_output_that_is_the_input_by_another_name_is_refused(trained_nlp, tmp_path, link):
    src = write_lines(tmp_path / "in.txt", TEXTS)
    before = src.read_bytes()
    out = tmp_path / "out.txt"
    os.link(src, out) if link == "hard" else os.symlink(src, out)
    with pytest.raises(InputOutputError, match="is the input file itself"):
        annotate(trained_nlp, src, out, output_format="jsonl", progress=False)
    assert src.read_bytes() == before


def test_resume_refuses_the_output_of_a_different_longer_input(trained_nlp, tmp_path):
    other = write_lines(tmp_path / "other.txt", corpus(50))
    out = annotate_to(trained_nlp, other, tmp_path / "out.jsonl")
    before = out.read_bytes()
    shorter = write_lines(tmp_path / "in.txt", TEXTS[:10])
    with pytest.raises(InputOutputError, match="holds 50 documents but .* has only 10"):
        annotate(trained_nlp, shorter, out, resume=True, progress=False)
    # As long, but other lines: the fingerprint differs.
    same_length = write_lines(tmp_path / "same.txt", [f"{t} !" for t in corpus(50)])
    with pytest.raises(InputOutputError, match="fingerprints differ"):
        annotate(trained_nlp, same_length, out, resume=True, progress=False)
    assert out.read_bytes() == before
    # The same lines with more after them: the output belongs to it, and goes on.
    longer = write_lines(tmp_path / "longer.txt", corpus(50) + ["Angela Moreau ."])
    stats = annotate(trained_nlp, longer, out, resume=True, progress=False)
    assert stats.skipped == 50 and stats.docs == 1 and len(read_strict_jsonl(out)) == 51


def test_resume_refuses_an_output_without_its_resume_file(trained_nlp, tmp_path):
    src = write_lines(tmp_path / "in.txt", corpus(20))
    out = annotate_to(trained_nlp, src, tmp_path / "out.jsonl")
    resume_file(out).unlink()
    with pytest.raises(InputOutputError, match="no valid out.jsonl.resume.json"):
        annotate(trained_nlp, src, out, resume=True, progress=False)


def test_full_disk_gives_a_file_error(trained_nlp, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    src = write_lines(tmp_path / "in.txt", corpus(20))
    with pytest.raises(InputOutputError, match=r"Cannot write /dev/full \(No space left on device\) after 0 documents"):
        annotate(trained_nlp, src, "/dev/full", output_format="jsonl", progress=False)


def test_output_under_a_file_gives_a_file_error(trained_nlp, tmp_path):
    src = write_lines(tmp_path / "in.txt", TEXTS)
    (tmp_path / "plain").write_text("")
    with pytest.raises(InputOutputError, match="is a file, not a folder"):
        annotate(trained_nlp, src, tmp_path / "plain" / "out.jsonl", progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_gives_a_file_error(trained_nlp, tmp_path):
    src = write_lines(tmp_path / "in.txt", TEXTS)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputOutputError, match="is not writable"):
            annotate(trained_nlp, src, folder / "out.jsonl", progress=False)
    finally:
        folder.chmod(0o755)


def test_write_failure_mid_run_keeps_what_was_written_for_resume(trained_nlp, tmp_path, monkeypatch):
    from spacy_rnn_ner.annotate import engine, io

    monkeypatch.setattr(engine, "WRITE_EVERY", 10)
    src = write_lines(tmp_path / "in.txt", corpus(45))
    out = tmp_path / "out.jsonl"
    real_write, calls = io.JsonlWriter.write, []

    def disk_fills_up(self, outputs, digests):
        calls.append(len(outputs))
        if len(calls) == 3:
            raise io._write_error(self.path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), self.n_done)
        real_write(self, outputs, digests)

    monkeypatch.setattr(io.JsonlWriter, "write", disk_fills_up)
    with pytest.raises(InputOutputError, match="No space left on device.*rerun with --resume"):
        annotate(trained_nlp, src, out, batch_size=5, progress=False)
    assert len(read_strict_jsonl(out)) == 20 and calls == [10, 10, 10]
    monkeypatch.setattr(io.JsonlWriter, "write", real_write)
    stats = annotate(trained_nlp, src, out, resume=True, batch_size=5, progress=False)
    assert stats.skipped == 20 and [r["index"] for r in read_strict_jsonl(out)] == list(range(45))


def test_entity_offsets_never_start_or_end_on_whitespace(trained_nlp, tmp_path):
    texts = [
        "Angela Moreau  \n\n flew from   Lyon\n\nto New York City   on Monday .",
        "  \n [Tomas Berg]\t\tvisited\n\n\nFrankfurt  \n and   Buenos Aires  .  \n",
        "\n\n   \n",
        "Kenya\n\n\n\nbeat   Uganda\t\t\tin the\n  Africa Cup  qualifier . \n\n Li Wei   \n signed .",
    ]
    records = run(trained_nlp, [json.dumps({"text": t}) for t in texts], tmp_path)
    found = 0
    for text, record in zip(texts, records):
        for ent in record["ents"]:
            span = text[ent["start"] : ent["end"]]
            assert span == ent["text"]
            assert span.strip() and span == span.strip(), f"entity {span!r} starts or ends on whitespace"
            found += 1
    assert found >= 4


@Language.component("test_explode_on_boom")
def explode_on_boom(doc):
    if "BOOM" in doc.text:
        raise RuntimeError("cannot take this document")
    return doc


def test_document_the_pipeline_fails_on_gives_an_error_record(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_explode_on_boom")
    lines = [json.dumps({"text": t}) for t in ["one", "two", "a BOOM here", "four", "five", "six"]]
    records = run(nlp, lines, tmp_path, batch_size=4)
    assert [r["index"] for r in records] == list(range(6))
    assert "the pipeline failed on this document (RuntimeError: cannot take this document)" in records[2]["error"]
    assert all("ents" in r for i, r in enumerate(records) if i != 2)
    with pytest.raises(BadLineError, match="line 3: the pipeline failed"):
        run(nlp, lines, tmp_path, batch_size=4, strict=True)
    assert len(read_strict_jsonl(tmp_path / "out.jsonl")) == 2
    with pytest.raises(PipelineError, match="failed on 20 documents in a row"):
        run(nlp, [json.dumps({"text": f"BOOM {i}"}) for i in range(25)], tmp_path)
    assert len(read_strict_jsonl(tmp_path / "out.jsonl")) == 19  # the error records before it are written


def test_spacy_output_takes_odd_meta_and_ids(trained_nlp, tmp_path):
    lines = [
        '{"text": "Lyon .", "id": ' + "9" * 40 + ', "meta": {"x": NaN, "s": "\\ud800"}}',
        '{"text": "Angela Moreau ."}',
    ]
    src = write_lines(tmp_path / "in.jsonl", lines)
    annotate(trained_nlp, src, tmp_path / "out.spacy", progress=False)
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("en").vocab))
    assert docs[0].user_data["id"] == "9" * 40  # too big for msgpack: kept as a string
    assert docs[0].user_data["meta"] == {"x": None, "s": "\ufffd"}
    assert len(docs) == 2


def test_json_line_writes_strict_json_whatever_the_values():
    record = {"index": 3, "meta": {"n": float("nan"), "i": float("-inf"), "s": "a\ud800", b"k": b"\xff", (1, 2): (3,)}}
    value = strict_json(json_line(record).decode("utf8"))
    assert value == {"index": 3, "meta": {"n": None, "i": None, "s": "a\ufffd", "b'k'": "\ufffd", "(1, 2)": [3]}}
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    value = strict_json(json_line({"index": 4, "line": 5, "meta": deep}).decode("utf8"))
    assert value["index"] == 4 and "cannot be written as JSON" in value["error"]
