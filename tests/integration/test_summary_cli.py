"""`python -m spacy_rnn_ner summary` as a user runs it."""
import subprocess
import sys

import pytest

from tests.test_summary import SMALL_CONFIG

pytestmark = pytest.mark.slow


def test_summary_command_on_an_untrained_config(tmp_path):
    path = tmp_path / "small.cfg"
    path.write_text(SMALL_CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "summary", str(path), "--labels", "A,B", "--components.rnn_tagger.model.hidden_width", "6"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "BiLSTM layer 1 backward" in result.stdout and "CRF transitions" in result.stdout
    assert "6 -> 6 (4 gates)" not in result.stdout and "8 -> 6 (4 gates)" in result.stdout  # the override applied
    missing = subprocess.run([sys.executable, "-m", "spacy_rnn_ner", "summary", str(tmp_path / "nope.cfg")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
