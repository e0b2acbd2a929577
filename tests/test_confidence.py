"""Entity confidences: span marginals of the constrained lattice, the threshold,
and their survival through serialization."""
import itertools

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_rnn_ner.lattice import forward_backward, span_probabilities
from spacy_rnn_ner.tag_scheme import (
    IMPOSSIBLE,
    is_valid_sequence,
    make_tags,
    tag_spans,
    transition_constraints,
)

from .conftest import TRAIN_DATA, blank_with_tagger, make_examples, train_tagger


def brute_force_span_probability(scores, trans, constraints, tags, scheme, span):
    """Sum exp(score) over valid sequences containing exactly this labelled span."""
    n, n_tags = scores.shape
    total, hit = 0.0, 0.0
    for seq in itertools.product(range(n_tags), repeat=n):
        if not is_valid_sequence(seq, *constraints):
            continue
        weight = numpy.exp(sum(scores[i, t] for i, t in enumerate(seq)) + sum(trans[a, b] for a, b in zip(seq, seq[1:])))
        total += weight
        if span in tag_spans([tags[t] for t in seq], scheme):
            hit += weight
    return hit / total


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_span_marginals_match_enumeration(scheme):
    tags = make_tags(["A", "B"], scheme)
    allowed, start, end = transition_constraints(tags, scheme)
    rng = numpy.random.default_rng(0)
    learned = rng.normal(0, 0.5, allowed.shape)
    trans = numpy.where(allowed, learned, IMPOSSIBLE)
    start_s, end_s = numpy.where(start, 0.0, IMPOSSIBLE), numpy.where(end, 0.0, IMPOSSIBLE)
    index = {t: i for i, t in enumerate(tags)}
    for trial in range(3):
        scores = rng.normal(0, 1.5, (4, len(tags)))
        result = forward_backward([scores], trans, start_s, end_s, want_pairs=False, keep_tables=True)
        # Every span of every label, as a path of tags, scored against enumeration.
        for i, j, label in [(0, 1, "A"), (1, 3, "B"), (0, 4, "A"), (3, 4, "B"), (2, 4, "A")]:
            if scheme == "BILUO":
                path = [f"U-{label}"] if j - i == 1 else [f"B-{label}"] + [f"I-{label}"] * (j - i - 2) + [f"L-{label}"]
                cont = None
            else:
                path = [f"B-{label}"] + [f"I-{label}"] * (j - i - 1)
                cont = [index[f"I-{label}"]]
            tag_ids = [0] * i + [index[t] for t in path] + [0] * (4 - j)
            got = span_probabilities(result, 0, scores, trans, end_s, tag_ids, [(i, j)], cont)[0]
            expected = brute_force_span_probability(scores, learned, (allowed, start, end), tags, scheme, (i, j, label))
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)


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
