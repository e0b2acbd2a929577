"""The evaluation report's measures: calibration, threshold curve, confusion (the script: tests/integration)."""

import numpy
import pytest

from spacy_rnn_ner.scoring import calibration, confusion, threshold_curve



def test_calibration_of_perfect_and_overconfident_scores():
    correct = numpy.array([True] * 8 + [False] * 2)
    assert calibration(numpy.full(10, 0.8), correct)["ece"] == pytest.approx(0.0)
    assert calibration(numpy.full(10, 1.0), correct)["ece"] == pytest.approx(0.2)


def test_threshold_curve_counts():
    scores = numpy.array([0.95, 0.85, 0.4, 0.2])
    correct = numpy.array([True, True, False, True])
    rows = {r["threshold"]: r for r in threshold_curve(scores, correct, n_gold=4, thresholds=[0.0, 0.5, 0.9])}
    assert rows[0.0]["precision"] == pytest.approx(0.75) and rows[0.0]["recall"] == pytest.approx(0.75)
    assert rows[0.5]["precision"] == 1.0 and rows[0.5]["recall"] == 0.5 and rows[0.5]["kept"] == 2
    assert rows[0.9]["kept"] == 1


def test_confusion_counts_missed_spurious_and_wrong_type(trained_nlp):
    gold = trained_nlp.make_doc("Ann Lee met Bob in Oslo .")
    gold.ents = [gold.char_span(0, 7, "PER"), gold.char_span(12, 15, "PER")]
    predicted = trained_nlp.make_doc("Ann Lee met Bob in Oslo .")
    predicted.ents = [predicted.char_span(0, 7, "PER"), predicted.char_span(12, 15, "ORG"), predicted.char_span(19, 23, "LOC")]
    counts = confusion([(predicted, gold)])
    assert counts[("PER", "PER")] == 1 and counts[("PER", "ORG")] == 1 and counts[("(spurious)", "LOC")] == 1
    predicted.ents = []
    assert confusion([(predicted, gold)])[("PER", "(missed)")] == 2



def test_raw_text_scores_reread_the_text_with_the_pipelines_tokenizer(trained_nlp, tmp_path):
    from spacy.tokens import Doc, DocBin

    from spacy_rnn_ner.scoring import evaluate_gold_tokens, evaluate_raw_text
    from tests.helpers import make_examples

    gold = [eg.reference for eg in make_examples(trained_nlp)]
    # One doc whose gold tokens spaCy's tokenizer would split differently.
    glued = Doc(trained_nlp.vocab, words=["Angela", "Moreau", "(Lyon)", "left"], ents=["B-PER", "I-PER", "O", "O"])
    DocBin(docs=gold + [glued]).to_disk(tmp_path / "gold.spacy")
    raw = evaluate_raw_text(trained_nlp, tmp_path / "gold.spacy")
    tokens = evaluate_gold_tokens(trained_nlp, tmp_path / "gold.spacy")
    assert raw["n_docs"] == tokens["n_docs"] == len(gold) + 1
    assert raw["ents_f"] > 0.9 and tokens["ents_f"] > 0.9
    assert raw["ents_per_type"].keys() == tokens["ents_per_type"].keys()
