"""Temperature scaling fitted on held-out data, and the before_to_disk callback that saves it in the config."""
import numpy
import pytest
import spacy
from spacy.util import registry

from spacy_rnn_ner.calibration import TEMPERATURES, fit_temperature
from spacy_rnn_ner.scoring import gold_token_examples, scored_predictions




def test_fit_matches_the_confidences_the_pipeline_writes(pipeline_dir, dev_path):
    nlp = spacy.load(pipeline_dir)
    examples = gold_token_examples(nlp, dev_path)
    best, rows = fit_temperature(nlp, "rnn_tagger", examples)
    assert [row["temperature"] for row in rows] == list(TEMPERATURES)
    assert best == min(rows, key=lambda row: row["log_loss"])["temperature"]
    assert nlp.get_pipe("rnn_tagger").cfg["temperature"] == 1.0  # left as it was
    losses = {row["temperature"]: row["log_loss"] for row in rows}
    assert len(set(losses.values())) > 1
    for temperature in (1.0, 2.0):
        nlp.get_pipe("rnn_tagger").cfg["temperature"] = temperature
        docs = list(nlp.pipe(eg.predicted.copy() for eg in examples))
        scores, correct, _ = scored_predictions(zip(docs, (eg.reference for eg in examples)), "rnn_tagger")
        p = numpy.clip(scores, 1e-6, 1 - 1e-6)
        expected = float(-(correct * numpy.log(p) + (~correct) * numpy.log(1 - p)).mean())
        assert losses[temperature] == pytest.approx(expected, rel=1e-5)


def test_callback_writes_the_fitted_temperature_into_the_saved_config(pipeline_dir, dev_path, tmp_path):
    nlp = spacy.load(pipeline_dir)
    best, _ = fit_temperature(nlp, "rnn_tagger", gold_token_examples(nlp, dev_path))
    callback = registry.callbacks.get("spacy_rnn_ner.calibrate_temperature.v1")(path=str(dev_path))
    assert callback(nlp) is nlp
    assert nlp.config["components"]["rnn_tagger"]["temperature"] == best != 1.0
    nlp.to_disk(tmp_path / "calibrated")
    loaded = spacy.load(tmp_path / "calibrated")
    assert loaded.config["components"]["rnn_tagger"]["temperature"] == best
    assert loaded.get_pipe("rnn_tagger").cfg["temperature"] == best
    overridden = spacy.load(tmp_path / "calibrated", config={"components": {"rnn_tagger": {"temperature": 1.0}}})
    assert overridden.get_pipe("rnn_tagger").cfg["temperature"] == 1.0
    with pytest.raises(ValueError, match="calibrates the component 'ner'.*not in the pipeline"):
        registry.callbacks.get("spacy_rnn_ner.calibrate_temperature.v1")(path=str(dev_path), component="ner")(nlp)
