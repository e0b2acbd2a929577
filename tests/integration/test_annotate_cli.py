"""`spacy_rnn_ner annotate` end to end: a killed run resumed, n_process, Dask and the CLI."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import DocBin

from spacy_rnn_ner.annotate import BadLineError, annotate

from tests.helpers import TEXTS, annotate_to, corpus, read_jsonl, strict_json, write_lines

pytestmark = pytest.mark.slow


def test_killed_run_resumes_without_duplicates_or_gaps(pipeline_dir, tmp_path):
    texts = corpus(3000)
    lines = [json.dumps({"text": t}) for t in texts]
    lines[2100] = '{"text": "Lyon", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"  # a hostile line past the kill
    src = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "spacy_rnn_ner", "annotate", str(pipeline_dir), str(src), str(out), "-b", "32"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    sidecar = out.with_name(out.name + ".resume.json")

    def counted() -> int:
        # Kill only once the resume file counts some documents: a kill between a
        # batch's write and its count is resumed from the last count (correct,
        # but then there is nothing to skip and the test proves less).
        try:
            return json.loads(sidecar.read_text(encoding="utf8")).get("documents", 0)
        except (OSError, ValueError):
            return 0

    while time.time() < deadline and proc.poll() is None:
        if counted() > 0:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    n_killed = len(out.read_bytes().splitlines())
    assert 0 < n_killed < len(texts)
    result = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Resumed after" in result.stdout
    records = [strict_json(line) for line in out.read_text(encoding="utf8").splitlines()]
    assert [r["index"] for r in records] == list(range(len(texts)))
    assert "nested deeper than 100 levels" in records[2100]["error"]
    reference = annotate_to(pipeline_dir, src, tmp_path / "reference.jsonl", batch_size=32)
    assert out.read_bytes() == reference.read_bytes()


def test_n_process_2_gives_the_same_output(pipeline_dir, tmp_path):
    lines = [json.dumps({"text": t, "id": i}) for i, t in enumerate(corpus(200))]
    lines[50] = '{"text": "Lyon \\ud800"}'
    lines[51] = "{broken"
    src = write_lines(tmp_path / "in.jsonl", lines)
    one = annotate_to(pipeline_dir, src, tmp_path / "one.jsonl", batch_size=16)
    two = annotate_to(pipeline_dir, src, tmp_path / "two.jsonl", batch_size=16, n_process=2)
    assert one.read_bytes() == two.read_bytes()
    assert len(read_jsonl(two)) == 200 and "error" in read_jsonl(two)[50]
    # .spacy in and out, through the worker processes too.
    annotate_to(pipeline_dir, src, tmp_path / "one.spacy", batch_size=16)
    notes = []
    annotate_to(pipeline_dir, src, tmp_path / "two.spacy", batch_size=16, n_process=2, log=notes.append)
    assert len([n for n in notes if "words on average" in n]) == 1  # short docs: the note that -n 1 is faster
    vocab = spacy.blank("en").vocab
    docs_one = list(DocBin().from_disk(tmp_path / "one.spacy").get_docs(vocab))
    docs_two = list(DocBin().from_disk(tmp_path / "two.spacy").get_docs(vocab))
    assert [(d.to_json(), d.user_data) for d in docs_one] == [(d.to_json(), d.user_data) for d in docs_two]
    from_spacy = annotate_to(pipeline_dir, tmp_path / "one.spacy", tmp_path / "three.jsonl", batch_size=16, n_process=2)
    reference = annotate_to(pipeline_dir, tmp_path / "one.spacy", tmp_path / "four.jsonl", batch_size=16)
    assert from_spacy.read_bytes() == reference.read_bytes()


@Language.component("test_explode_on_boom_forked")
def explode_on_boom(doc):
    if "BOOM" in doc.text:
        raise RuntimeError("cannot take this document")
    return doc


def test_n_process_2_turns_pipeline_failures_into_error_records_and_stops_under_strict(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_explode_on_boom_forked")
    texts = [f"doc {i}" for i in range(100)]
    texts[70] = "a BOOM here"
    src = write_lines(tmp_path / "in.txt", texts)
    records = read_jsonl(annotate_to(nlp, src, tmp_path / "out.jsonl", batch_size=8, n_process=2))
    assert [r["index"] for r in records] == list(range(100))
    assert [i for i, r in enumerate(records) if "error" in r] == [70]
    with pytest.raises(BadLineError, match="line 71: the pipeline failed"):
        annotate(nlp, src, tmp_path / "strict.jsonl", batch_size=8, n_process=2, strict=True, progress=False)
    assert [r["index"] for r in read_jsonl(tmp_path / "strict.jsonl")] == list(range(70))


def test_dask_local_cluster_matches_single_process(pipeline_dir, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    lines = [json.dumps({"text": t, "meta": {"n": i}}) for i, t in enumerate(corpus(150))]
    lines.insert(40, "{broken")
    lines.insert(41, '{"text": "Lyon", "id": ' + "7" * 5000 + ', "meta": {"x": NaN, "s": "\\ud800"}}')
    lines.insert(42, '{"text": "Paris", "id": 12345678901234567890123, "meta": {"x": NaN, "s": "\\ud800"}}')
    src = write_lines(tmp_path / "in.jsonl", lines)
    single = annotate_to(pipeline_dir, src, tmp_path / "single.jsonl", batch_size=8)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert len(cluster.workers) == 2
        via_dask = annotate_to(
            pipeline_dir, src, tmp_path / "dask.jsonl", dask_address=cluster.scheduler_address, partition_size=20, batch_size=8
        )
        assert via_dask.read_bytes() == single.read_bytes()
        annotate_to(pipeline_dir, src, tmp_path / "dask.spacy", dask_address=cluster.scheduler_address, partition_size=20, batch_size=8)
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(tmp_path / "dask.spacy").get_docs(nlp.vocab))
    assert len(docs) == len(lines) and "error" in docs[40].user_data and "error" in docs[41].user_data
    assert docs[42].user_data["meta"] == {"x": None, "s": "\ufffd"} and docs[42].user_data["id"] == "12345678901234567890123"
    assert [d.text for d in docs[:40]] == corpus(150)[:40]


def test_cli_without_terminal_writes_no_progress_bar(pipeline_dir, tmp_path):
    src = write_lines(tmp_path / "in.txt", corpus(30))
    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "annotate", str(pipeline_dir), str(src), str(out)],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout  # no bar redraws in logs
    assert "Annotated 30 documents" in result.stdout
    assert len(read_jsonl(out)) == 30
    # Forced on, the bar goes to stderr and leaves the output file alone.
    forced = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "annotate", str(pipeline_dir), str(src), str(tmp_path / "o2.jsonl"), "--progress"],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
    )
    assert "doc" in forced.stderr and "words/s" in forced.stderr
    assert (tmp_path / "o2.jsonl").read_bytes() == out.read_bytes()


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "annotate", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def assert_one_line_error(result, code, *phrases):
    """The run failed with `code` and said so in one line on stderr, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("✘ "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in lines[0]


def test_cli_exit_codes_name_the_kind_of_error(tmp_path, pipeline_dir):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in TEXTS[:3]] + ['{"text": "Lyon \\ud800"}'])
    out = tmp_path / "o.jsonl"
    assert_one_line_error(cli(pipeline_dir, src, out, "--strict"), 1, "line 4", "lone surrogate", "--resume")
    assert len(read_jsonl(out)) == 3
    assert_one_line_error(cli(pipeline_dir, src, out, "--batch-size", "0"), 2, "--batch-size", "at least 1")
    assert_one_line_error(cli(pipeline_dir, src, out, "--batch-size", "-5"), 2, "not -5")
    assert_one_line_error(cli(pipeline_dir, src, out, "--n-process", "0"), 2, "--n-process")
    assert_one_line_error(cli(pipeline_dir, src, out, "--dask", "local:0", timeout=60), 2, "local:N")
    assert_one_line_error(cli(pipeline_dir, src, out, "--dask", "scheduler.example"), 2, "tcp://HOST:PORT")
    assert len(read_jsonl(out)) == 3  # an option error leaves the output alone
    os.link(src, tmp_path / "same.jsonl")
    assert_one_line_error(cli(pipeline_dir, src, tmp_path / "same.jsonl"), 3, "is the input file itself")
    assert_one_line_error(cli(pipeline_dir, tmp_path / "missing.jsonl", out), 3, "not found")
    assert_one_line_error(cli(tmp_path / "nope", src, out), 4, "Cannot load the pipeline")
    assert len(read_jsonl(out)) == 3  # a pipeline that does not load leaves the output alone


def test_cli_unreachable_dask_scheduler_fails_within_the_timeout(tmp_path, pipeline_dir):
    pytest.importorskip("dask.distributed")
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = write_lines(tmp_path / "in.txt", TEXTS[:3])
    start = time.time()
    result = cli(pipeline_dir, src, tmp_path / "o.jsonl", "--dask", f"tcp://127.0.0.1:{port}", "--dask-timeout", "1", timeout=120)
    assert_one_line_error(result, 5, "Cannot reach the Dask scheduler", "--dask-timeout")
    assert time.time() - start < 60


def test_cli_debug_shows_the_traceback(tmp_path, pipeline_dir):
    src = write_lines(tmp_path / "in.txt", TEXTS[:3])
    result = cli(tmp_path / "nope", src, tmp_path / "o.jsonl", "--debug")
    assert result.returncode == 4
    assert "Traceback (most recent call last)" in result.stderr and "spacy.load" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("✘ Cannot load the pipeline")


def test_cli_resume_onto_the_output_of_another_input_is_refused(tmp_path, pipeline_dir):
    longer = write_lines(tmp_path / "longer.txt", corpus(60))
    out = tmp_path / "o.jsonl"
    assert cli(pipeline_dir, longer, out).returncode == 0
    shorter = write_lines(tmp_path / "in.txt", corpus(20)[::-1])
    assert_one_line_error(cli(pipeline_dir, shorter, out, "--resume"), 3, "Cannot resume", "has only 20")
    assert len(read_jsonl(out)) == 60


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "spacy_rnn_ner"
    assert script.exists(), "pip install -e . should install the spacy_rnn_ner console script"
    result = subprocess.run([str(script), "annotate", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--resume" in result.stdout and "--dask" in result.stdout
    help_text = " ".join(result.stdout.split())
    for code in ("1 a bad input line", "2 bad options", "3 the input cannot be read", "4 the pipeline", "5 the Dask"):
        assert code in help_text, help_text
    assert "--debug" in help_text
