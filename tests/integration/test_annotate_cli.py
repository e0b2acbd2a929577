"""`spacy_rnn_ner annotate` end to end: a killed run resumed, n_process, Dask and the CLI."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from tests.helpers import annotate_to, corpus, read_jsonl, write_lines

pytestmark = pytest.mark.slow


def test_killed_run_resumes_without_duplicates_or_gaps(pipeline_dir, tmp_path):
    texts = corpus(3000)
    src = write_lines(tmp_path / "in.txt", texts)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "spacy_rnn_ner", "annotate", str(pipeline_dir), str(src), str(out), "-b", "32"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd + ["--resume"], env=env, check=True, capture_output=True)
    records = read_jsonl(out)
    assert [r["index"] for r in records] == list(range(len(texts)))
    reference = annotate_to(pipeline_dir, src, tmp_path / "reference.jsonl", batch_size=32)
    assert out.read_bytes() == reference.read_bytes()


def test_n_process_2_gives_the_same_output(pipeline_dir, tmp_path):
    src = write_lines(tmp_path / "in.txt", corpus(200))
    one = annotate_to(pipeline_dir, src, tmp_path / "one.jsonl", batch_size=16)
    two = annotate_to(pipeline_dir, src, tmp_path / "two.jsonl", batch_size=16, n_process=2)
    assert one.read_bytes() == two.read_bytes()


def test_dask_local_cluster_matches_single_process(pipeline_dir, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    lines = [json.dumps({"text": t, "meta": {"n": i}}) for i, t in enumerate(corpus(150))]
    lines.insert(40, "{broken")
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
    assert len(docs) == len(lines) and "error" in docs[40].user_data
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


def test_cli_reports_bad_model_path_and_strict_failure(tmp_path, pipeline_dir):
    src = write_lines(tmp_path / "in.jsonl", ["{bad"])
    result = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "annotate", str(tmp_path / "nope"), str(src), str(tmp_path / "o.jsonl")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1 and "Cannot load the pipeline" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "annotate", str(pipeline_dir), str(src), str(tmp_path / "o.jsonl"), "--strict"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1 and "line 1" in result.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "spacy_rnn_ner"
    assert script.exists(), "pip install -e . should install the spacy_rnn_ner console script"
    result = subprocess.run([str(script), "annotate", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--resume" in result.stdout and "--dask" in result.stdout
