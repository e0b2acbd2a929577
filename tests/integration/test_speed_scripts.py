"""scripts/latency_stages.py on a pipeline of the default architecture."""
import subprocess
import sys

import pytest
import spacy

from tests.helpers import REPO, make_examples

pytestmark = pytest.mark.slow


def test_latency_stages_times_every_stage_of_the_default_model(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("rnn_tagger")
    nlp.initialize(lambda: make_examples(nlp))
    nlp.to_disk(tmp_path / "model")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "latency_stages.py"), "--model", str(tmp_path / "model"), "--calls", "20"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    for stage in ("embedding", "LSTM layer", "document memory", "window", "torch's LSTM kernel", "the whole model (`model.predict`)"):
        assert stage in rows, result.stdout
    # Stages timed both ways carry two numbers.
    assert all(cell.strip() for cell in rows["LSTM layer"].split("|")[2:4]), result.stdout
