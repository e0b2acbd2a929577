"""`python -m spacy_rnn_ner calibrate` as a user runs it on a pipeline trained without the callback."""
import subprocess
import sys

import pytest
import spacy

from spacy_rnn_ner.calibration import fit_temperature
from spacy_rnn_ner.scoring import gold_token_examples

pytestmark = pytest.mark.slow


def test_calibrate_saves_the_fitted_temperature(pipeline_dir, dev_path, tmp_path):
    out = tmp_path / "calibrated"
    result = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "calibrate", str(pipeline_dir), str(dev_path), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    nlp = spacy.load(pipeline_dir)
    best, _ = fit_temperature(nlp, "rnn_tagger", gold_token_examples(nlp, dev_path))
    assert spacy.load(out).config["components"]["rnn_tagger"]["temperature"] == best
    assert f"Temperature {best:g}" in result.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "calibrate", str(pipeline_dir), str(dev_path), str(out), "-c", "ner"],
        capture_output=True, text=True, timeout=300,
    )
    assert wrong.returncode == 1 and "No component 'ner'" in wrong.stdout + wrong.stderr


def test_calibrate_with_the_training_corpus_fits_as_the_default_config(pipeline_dir, dev_path, tmp_path):
    from spacy.tokens import DocBin

    from spacy_rnn_ner.calibration import TEMPERATURES_V2, entity_texts

    nlp = spacy.load(pipeline_dir)
    examples = gold_token_examples(nlp, dev_path)
    DocBin(docs=[eg.reference for eg in examples[:3]]).to_disk(tmp_path / "train.spacy")
    out = tmp_path / "calibrated"
    result = subprocess.run(
        [sys.executable, "-m", "spacy_rnn_ner", "calibrate", str(pipeline_dir), str(dev_path), str(out),
         "--train", str(tmp_path / "train.spacy")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    best, rows = fit_temperature(nlp, "rnn_tagger", examples, TEMPERATURES_V2, entity_texts(nlp, tmp_path / "train.spacy"))
    assert spacy.load(out).config["components"]["rnn_tagger"]["temperature"] == best
    assert f"temperature {TEMPERATURES_V2[-1]:g}:" in result.stdout  # the wider grid
