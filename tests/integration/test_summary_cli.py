"""`python -m spacy_rnn_ner summary` as a user runs it."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

CONFIG = """
[nlp]
lang = "en"
pipeline = ["rnn_tagger"]

[components]

[components.rnn_tagger]
factory = "rnn_tagger"

[components.rnn_tagger.model]
@architectures = "spacy_rnn_ner.BiLSTMCRFTagger.v2"
hidden_width = 8
memory_conv_width = 4

[components.rnn_tagger.model.embed]
@architectures = "spacy_rnn_ner.FeatureEmbed.v2"
width = 8
attrs = ["NORM", "SHAPE"]
rows = [200, 50]
use_clusters = false
char_width = 2
n_chars = 4
"""


def test_summary_command_on_an_untrained_config(tmp_path):
    path = tmp_path / "small.cfg"
    path.write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "summary", str(path), "--labels", "A,B", "--components.rnn_tagger.model.hidden_width", "6"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "BiLSTM layer 1 backward" in result.stdout and "CRF transitions" in result.stdout
    assert "6 -> 6 (4 gates)" not in result.stdout and "8 -> 6 (4 gates)" in result.stdout  # the override applied
    missing = subprocess.run([sys.executable, "-m", "spacy_rnn_ner", "summary", str(tmp_path / "nope.cfg")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
