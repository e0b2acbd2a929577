"""Entity confidences: span marginals of the constrained lattice, the threshold,
and their survival through serialization."""
import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from tests.helpers import TRAIN_DATA, blank_with_tagger, make_examples, train_tagger


@pytest.fixture(scope="module")
def nlp():
    nlp = blank_with_tagger()
    train_tagger(nlp, make_examples(nlp), n_iter=100)  # part-trained on purpose: scores spread out
    return nlp


TEXTS = [text for text, _ in TRAIN_DATA] + ["Tomas Berg and Li Wei visited Kenya and Lyon ."]


def test_scores_are_probabilities_and_spans_mirror_ents(nlp):
    for doc in nlp.pipe(TEXTS):
        group = doc.spans["rnn_tagger"]
        scores = group.attrs["scores"]
        assert len(scores) == len(group)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert [(s.start, s.end, s.label_) for s in group] == [(e.start, e.end, e.label_) for e in doc.ents]


def test_threshold_removes_exactly_the_entities_below_it(nlp):
    distinct = sorted({float(s) for doc in nlp.pipe(TEXTS) for s in doc.spans["rnn_tagger"].attrs["scores"]})
    assert len(distinct) >= 2
    middle = len(distinct) // 2
    threshold = (distinct[middle - 1] + distinct[middle]) / 2
    tagger = nlp.get_pipe("rnn_tagger")
    tagger.cfg["threshold"] = threshold
    try:
        removed = 0
        for doc in nlp.pipe(TEXTS):
            group = doc.spans["rnn_tagger"]
            kept = [(s.start, s.end, s.label_) for s, p in zip(group, group.attrs["scores"]) if p >= threshold]
            assert [(e.start, e.end, e.label_) for e in doc.ents] == kept
            removed += len(group) - len(kept)
        assert removed > 0
    finally:
        tagger.cfg["threshold"] = 0.0


def test_threshold_from_config():
    nlp = blank_with_tagger(threshold=1.0)
    train_tagger(nlp, make_examples(nlp), n_iter=5)
    doc = nlp(TEXTS[0])
    assert len(doc.ents) == 0 or all(p >= 1.0 for p in doc.spans["rnn_tagger"].attrs["scores"])
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        blank_with_tagger(threshold=1.5)


def test_scores_survive_disk_and_docbin(nlp, tmp_path):
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    docs = list(nlp.pipe(TEXTS))
    for doc, again in zip(docs, loaded.pipe(TEXTS)):
        numpy.testing.assert_allclose(doc.spans["rnn_tagger"].attrs["scores"], again.spans["rnn_tagger"].attrs["scores"], rtol=1e-6)
    data = DocBin(docs=docs, store_user_data=True).to_bytes()
    restored = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    for doc, back in zip(docs, restored):
        assert [(s.start, s.end, s.label_) for s in back.spans["rnn_tagger"]] == [(s.start, s.end, s.label_) for s in doc.spans["rnn_tagger"]]
        numpy.testing.assert_allclose(back.spans["rnn_tagger"].attrs["scores"], doc.spans["rnn_tagger"].attrs["scores"])
