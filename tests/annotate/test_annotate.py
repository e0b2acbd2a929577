"""`annotate` in-process: formats, bad lines, strict mode, resume (the CLI, n_process and Dask: tests/integration)."""
import json

import pytest
import spacy
from spacy.language import Language
from spacy.util import minibatch
from spacy.tokens import DocBin

from spacy_rnn_ner.annotate import annotate
from spacy_rnn_ner.annotate.io import AnnotateError, DocBinWriter, Output, Progress, resume_file

from tests.helpers import TEXTS, annotate_to, corpus, count_in_resume_file, crash_state, expected_ents, read_jsonl, write_lines


def test_text_to_jsonl_one_record_per_line_in_order(pipeline_dir, trained_nlp, tmp_path):
    texts = corpus(40)
    src = write_lines(tmp_path / "in.txt", texts)
    stats = annotate(pipeline_dir, src, tmp_path / "out.jsonl", batch_size=8, progress=False)
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["index"] for r in records] == list(range(len(texts)))
    assert [r["line"] for r in records] == list(range(1, len(texts) + 1))
    assert stats.docs == len(texts) and stats.errors == 0
    assert stats.words == sum(len(trained_nlp(t)) for t in texts)
    found = 0
    for text, record in zip(texts, records):
        got = [(e["start"], e["end"], e["label"]) for e in record["ents"]]
        assert got == expected_ents(trained_nlp, text)
        for ent in record["ents"]:
            assert text[ent["start"] : ent["end"]] == ent["text"]
            assert 0.0 <= ent["score"] <= 1.0  # rnn_tagger provides confidences
            found += 1
    assert found > 20


def test_jsonl_input_keeps_meta_and_id_and_reports_bad_lines(pipeline_dir, trained_nlp, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"body": TEXTS[0], "meta": {"source": "a"}, "id": "doc-1"}),
        "{not json",
        "",  # blank: not a document
        json.dumps({"text": "wrong key"}),
        json.dumps({"body": 42}),
        json.dumps(["a", "list"]),
        json.dumps({"body": TEXTS[1]}),
    ]
    src.write_bytes(("\n".join(lines) + "\n").encode("utf8") + b'{"body": "caf\xe9"}\n')
    out = tmp_path / "out.jsonl"
    stats = annotate(pipeline_dir, src, out, text_key="body", include_text=True, progress=False)
    records = read_jsonl(out)
    assert [r["index"] for r in records] == list(range(7))
    assert [r["line"] for r in records] == [1, 2, 4, 5, 6, 7, 8]
    assert records[0]["meta"] == {"source": "a"} and records[0]["id"] == "doc-1"
    assert records[0]["text"] == TEXTS[0]
    assert [(e["start"], e["end"], e["label"]) for e in records[0]["ents"]] == expected_ents(trained_nlp, TEXTS[0])
    assert "invalid JSON" in records[1]["error"]
    assert "no 'body' key" in records[2]["error"] and "--text-key" in records[2]["error"]
    assert "not a string" in records[3]["error"]
    assert "JSON object" in records[4]["error"]
    assert "ents" in records[5] and "error" not in records[5]
    assert "UTF-8" in records[6]["error"]
    assert stats.errors == 5


def test_undecodable_text_line_gives_error_record(pipeline_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"Tomas Berg visited Lyon .\n\xff\xfe broken\nLast line without newline")
    records = read_jsonl(annotate_to(pipeline_dir, src, tmp_path / "out.jsonl"))
    assert len(records) == 3
    assert "error" in records[1] and records[1]["line"] == 2
    assert records[2]["line"] == 3 and "ents" in records[2]


def test_strict_stops_at_bad_line_after_writing_what_came_before(pipeline_dir, tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in TEXTS[:5]] + ["oops"] + [json.dumps({"text": "x"})])
    out = tmp_path / "out.jsonl"
    with pytest.raises(AnnotateError, match="line 6"):
        annotate(pipeline_dir, src, out, strict=True, progress=False)
    assert [r["index"] for r in read_jsonl(out)] == [0, 1, 2, 3, 4]
    # Fix the line and resume: the run completes without duplicates.
    write_lines(src, [json.dumps({"text": t}) for t in TEXTS[:5]] + [json.dumps({"text": "fixed"}), json.dumps({"text": "x"})])
    annotate(pipeline_dir, src, out, strict=True, resume=True, progress=False)
    assert [r["index"] for r in read_jsonl(out)] == list(range(7))


def test_resume_after_truncated_output_matches_uninterrupted_run(pipeline_dir, tmp_path):
    src = write_lines(tmp_path / "in.txt", corpus(60))
    full = annotate_to(pipeline_dir, src, tmp_path / "full.jsonl", batch_size=16)
    data = full.read_bytes()
    # A crash mid-write: 23 records counted in the resume file, then half of the 24th.
    partial = crash_state(full, src, tmp_path / "partial.jsonl", 23, half_of_next=True)
    stats = annotate(pipeline_dir, src, partial, resume=True, batch_size=16, progress=False)
    assert stats.skipped == 23 and stats.docs == 60 - 23
    assert partial.read_bytes() == data
    # Resuming a finished run does nothing and changes nothing.
    stats = annotate(pipeline_dir, src, partial, resume=True, progress=False)
    assert stats.docs == 0 and partial.read_bytes() == data


def test_resume_drops_records_written_after_the_resume_file_was_saved(trained_nlp, tmp_path):
    src = write_lines(tmp_path / "in.txt", corpus(40))
    full = annotate_to(trained_nlp, src, tmp_path / "full.jsonl", batch_size=8)
    # Killed between writing records 10-14 and counting them in the resume file.
    partial = crash_state(full, src, tmp_path / "partial.jsonl", 10, extra_records=5)
    stats = annotate(trained_nlp, src, partial, resume=True, batch_size=8, progress=False)
    assert stats.skipped == 10 and stats.docs == 30
    assert partial.read_bytes() == full.read_bytes()


class _BatchRecorder:
    """A pipeline component that writes down the texts of every batch nlp.pipe gives it."""

    def __init__(self) -> None:
        self.batches: list = []

    def __call__(self, doc):
        self.batches.append([doc.text])
        return doc

    def pipe(self, docs, batch_size=128):
        for batch in minibatch(docs, size=batch_size):
            self.batches.append([doc.text for doc in batch])
            yield from batch


@Language.factory("test_annotate_batch_recorder")
def _make_batch_recorder(nlp, name):
    return _BatchRecorder()


# Documents 3, 10 and 17 never reach the pipeline, so its batches of 4 start at documents
# 0, 5, 9, 14, 19, 23 and 27: a run resumed after `n_done` documents starts reading at `first`.
@pytest.mark.parametrize("n_done,first", [(1, 0), (9, 9), (12, 9), (14, 14), (21, 19)])
def test_resume_gives_the_pipeline_the_batches_of_an_uninterrupted_run(tmp_path, n_done, first):
    # Confidences depend in their last digits on which documents share a batch, so a resumed
    # run must cut the same batches. Error records (bad JSON, too long) never reach the pipeline.
    lines = [json.dumps({"text": f"Document number {i} ."}) for i in range(30)]
    lines[3] = "{not json"
    lines[10] = json.dumps({"text": "A text longer than this pipeline's max_length allows it to be ."})
    lines[17] = json.dumps({"no_text": 1})
    src = write_lines(tmp_path / "in.jsonl", lines)
    nlp = spacy.blank("en")
    nlp.max_length = 40
    recorder = nlp.add_pipe("test_annotate_batch_recorder")
    full = annotate_to(nlp, src, tmp_path / "full.jsonl", batch_size=4)
    uninterrupted = list(recorder.batches)
    assert len(uninterrupted) == 7 and all(len(b) == 4 for b in uninterrupted[:-1])
    partial = crash_state(full, src, tmp_path / "partial.jsonl", n_done)
    recorder.batches.clear()
    stats = annotate(nlp, src, partial, resume=True, batch_size=4, progress=False)
    assert stats.skipped == n_done and stats.docs == 30 - n_done
    assert recorder.batches == uninterrupted[len(uninterrupted) - len(recorder.batches) :]
    assert min(int(text.split()[2]) for text in recorder.batches[0]) == first
    assert partial.read_bytes() == full.read_bytes()


def test_resume_refuses_output_from_another_input(pipeline_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    write_lines(out, [json.dumps({"index": 5, "ents": []})])
    with pytest.raises(AnnotateError, match="Cannot resume"):
        annotate(pipeline_dir, write_lines(tmp_path / "in.txt", TEXTS), out, resume=True, progress=False)


def test_spacy_input_and_output(pipeline_dir, trained_nlp, tmp_path):
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in corpus(30)]
    DocBin(docs=docs).to_disk(tmp_path / "in.spacy")
    annotate(pipeline_dir, tmp_path / "in.spacy", tmp_path / "out.spacy", batch_size=4, progress=False)
    out_docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab))
    assert len(out_docs) == len(docs)
    assert not (tmp_path / "out.spacy.parts").exists()
    for doc, out in zip(docs, out_docs):
        assert [t.text for t in out] == [t.text for t in doc]
        assert [(e.start_char, e.end_char, e.label_) for e in out.ents] == expected_ents(trained_nlp, doc.text)
    assert out_docs[3].user_data["index"] == 3
    # .spacy input to JSONL output keeps the given tokens.
    records = read_jsonl(annotate_to(pipeline_dir, tmp_path / "in.spacy", tmp_path / "out.jsonl"))
    assert [r["index"] for r in records] == list(range(30)) and "line" not in records[0]


def test_spacy_output_resumes_from_complete_parts(pipeline_dir, tmp_path):
    nlp = spacy.blank("en")
    src = write_lines(tmp_path / "in.txt", corpus(25))
    full = annotate_to(pipeline_dir, src, tmp_path / "full.spacy")
    reference = list(DocBin().from_disk(full).get_docs(nlp.vocab))
    # The state a killed run leaves: whole parts, and a half-written temporary one.
    out = tmp_path / "out.spacy"
    parts = tmp_path / "out.spacy.parts"
    parts.mkdir()
    DocBin(docs=reference[:10], store_user_data=True).to_disk(parts / "part-000000.spacy")
    (parts / "part-000001.tmp").write_bytes(b"\x00garbage")
    count_in_resume_file(src, out, 10)
    stats = annotate(pipeline_dir, src, out, resume=True, progress=False)
    assert stats.skipped == 10 and stats.docs == 15
    got = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    assert [d.to_json() for d in got] == [d.to_json() for d in reference]
    assert [d.user_data["index"] for d in got] == list(range(25))


def test_docbin_writer_writes_parts_of_fixed_size(tmp_path):
    nlp = spacy.blank("en")
    src = write_lines(tmp_path / "in.txt", [f"doc {i}" for i in range(10)])
    out = tmp_path / "o.spacy"
    writer = DocBinWriter(out, Progress(out, src), part_size=4)
    writer.write([Output(record={}, doc=nlp.make_doc(f"doc {i}")) for i in range(10)], [b"d"] * 10)
    assert sorted(p.name for p in (tmp_path / "o.spacy.parts").iterdir()) == ["part-000000.spacy", "part-000001.spacy"]
    # Only the documents in whole parts count as safely written.
    assert json.loads(resume_file(out).read_text())["documents"] == 8
    writer.close()
    assert [d.text for d in DocBin().from_disk(tmp_path / "o.spacy").get_docs(nlp.vocab)] == [f"doc {i}" for i in range(10)]
    assert json.loads(resume_file(out).read_text())["documents"] == 10


def test_text_longer_than_max_length_is_an_error_record(pipeline_dir, tmp_path, monkeypatch):
    src = write_lines(tmp_path / "in.txt", ["short one .", "x " * 60, "another short one ."])
    original = spacy.load

    def small_max_length(*args, **kwargs):
        nlp = original(*args, **kwargs)
        nlp.max_length = 100
        return nlp

    monkeypatch.setattr(spacy, "load", small_max_length)
    records = read_jsonl(annotate_to(pipeline_dir, src, tmp_path / "out.jsonl"))
    assert "ents" in records[0] and "ents" in records[2]
    assert "max_length" in records[1]["error"]


def test_partitions_hold_whole_batches_of_readable_records():
    from spacy_rnn_ner.annotate.engine import _partitions
    from spacy_rnn_ner.annotate.io import Record

    records = [Record(index=i, text="x", error="bad" if i in (3, 4, 30) else None) for i in range(50)]
    parts = [part for part, _ in _partitions(records, 16)]
    assert [sum(r.error is None for r in part) for part in parts] == [16, 16, 15]
    assert [r.index for part in parts for r in part] == list(range(50))
