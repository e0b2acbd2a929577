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


def test_fit_on_new_entities_leaves_out_the_training_entities(pipeline_dir, dev_path):
    from spacy_rnn_ner.calibration import entity_confidences, log_loss

    nlp = spacy.load(pipeline_dir)
    examples = gold_token_examples(nlp, dev_path)
    by_t, ok, spans = entity_confidences(nlp, "rnn_tagger", examples, TEMPERATURES)
    texts = sorted({span.text for span in spans})
    known = set(texts[: len(texts) // 2])
    new = numpy.asarray([span.text not in known for span in spans])
    assert 0 < new.sum() < len(spans)
    best, rows = fit_temperature(nlp, "rnn_tagger", examples, train_entities=known, min_unseen=1)
    assert {row["n"] for row in rows} == {int(new.sum())}
    expected = {t: log_loss(by_t[t][new], ok[new]) for t in TEMPERATURES}
    for row in rows:
        assert row["log_loss"] == pytest.approx(expected[row["temperature"]], rel=1e-9)
    assert best == min(expected, key=expected.get)
    # Too few new entities: the fit counts all of them, as without train_entities.
    all_best, all_rows = fit_temperature(nlp, "rnn_tagger", examples)
    few_best, few_rows = fit_temperature(nlp, "rnn_tagger", examples, train_entities=known, min_unseen=len(spans))
    assert few_best == all_best and [r["log_loss"] for r in few_rows] == [r["log_loss"] for r in all_rows]
    assert {row["n"] for row in all_rows} == {len(spans)}


def test_callback_v2_fits_on_the_entities_new_to_the_training_corpus(pipeline_dir, dev_path, tmp_path):
    from spacy.tokens import DocBin

    from spacy_rnn_ner.calibration import TEMPERATURES_V2, entity_texts

    nlp = spacy.load(pipeline_dir)
    examples = gold_token_examples(nlp, dev_path)
    # A "training corpus" holding the first three dev documents' entities.
    DocBin(docs=[eg.reference for eg in examples[:3]]).to_disk(tmp_path / "train.spacy")
    train_entities = entity_texts(nlp, tmp_path / "train.spacy")
    assert train_entities
    best, _ = fit_temperature(nlp, "rnn_tagger", examples, TEMPERATURES_V2, train_entities)
    callback = registry.callbacks.get("spacy_rnn_ner.calibrate_temperature.v2")(
        path=str(dev_path), train_path=str(tmp_path / "train.spacy")
    )
    assert callback(nlp) is nlp
    assert nlp.config["components"]["rnn_tagger"]["temperature"] == best
    # Without train_path it is v1 with the wider grid.
    all_best, _ = fit_temperature(nlp, "rnn_tagger", examples, TEMPERATURES_V2)
    registry.callbacks.get("spacy_rnn_ner.calibrate_temperature.v2")(path=str(dev_path))(nlp)
    assert nlp.config["components"]["rnn_tagger"]["temperature"] == all_best
