"""Tag inventories, scheme conversions, transition constraints and exact constrained decoding."""
import itertools

import numpy
import pytest
from spacy.training import iob_to_biluo

from spacy_rnn_ner.tag_scheme import (
    ConstrainedDecoder,
    biluo_to_scheme,
    is_valid_sequence,
    make_tags,
    tags_to_biluo,
    transition_constraints,
)


def decoder_for(tags, scheme):
    allowed, start, end = transition_constraints(tags, scheme)
    return ConstrainedDecoder(allowed, start, end), (allowed, start, end)


def brute_force_best(log_probs, constraints):
    n, n_tags = log_probs.shape
    best, best_score = None, -numpy.inf
    for seq in itertools.product(range(n_tags), repeat=n):
        if is_valid_sequence(seq, *constraints):
            score = sum(log_probs[i, t] for i, t in enumerate(seq))
            if score > best_score:
                best, best_score = seq, score
    return list(best)


def test_make_tags_biluo_and_bio():
    assert make_tags(["PER", "ORG"], "BILUO") == [
        "O", "B-PER", "I-PER", "L-PER", "U-PER", "B-ORG", "I-ORG", "L-ORG", "U-ORG",
    ]
    assert make_tags(["PER"], "bio") == ["O", "B-PER", "I-PER"]
    with pytest.raises(ValueError, match="scheme"):
        make_tags(["PER"], "IOBES2")


def test_biluo_to_bio_keeps_missing_markers():
    gold = ["U-PER", "O", "B-ORG", "I-ORG", "L-ORG", None, "-"]
    assert biluo_to_scheme(gold, "BIO") == ["B-PER", "O", "B-ORG", "I-ORG", "I-ORG", None, "-"]
    assert biluo_to_scheme(gold, "BILUO") == gold


@pytest.mark.parametrize(
    "bio",
    [
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["B-PER", "B-PER", "I-PER", "B-ORG", "I-ORG", "I-ORG"],
        ["O", "O"],
        ["B-MISC"],
    ],
)
def test_bio_to_biluo_matches_spacy(bio):
    assert tags_to_biluo(bio, "BIO") == iob_to_biluo(bio)


def test_biluo_constraints():
    tags = make_tags(["PER", "LOC"], "BILUO")
    allowed, start, end = transition_constraints(tags, "BILUO")
    ix = {t: i for i, t in enumerate(tags)}
    assert allowed[ix["B-PER"], ix["L-PER"]]
    assert allowed[ix["B-PER"], ix["I-PER"]]
    assert not allowed[ix["B-PER"], ix["L-LOC"]]
    assert not allowed[ix["B-PER"], ix["O"]]
    assert not allowed[ix["O"], ix["I-PER"]]
    assert not allowed[ix["O"], ix["L-PER"]]
    assert allowed[ix["L-PER"], ix["U-LOC"]]
    assert allowed[ix["U-PER"], ix["B-PER"]]
    assert not start[ix["I-PER"]] and not start[ix["L-PER"]] and start[ix["U-PER"]]
    assert not end[ix["B-PER"]] and not end[ix["I-PER"]] and end[ix["L-PER"]]


def test_bio_constraints():
    tags = make_tags(["PER", "LOC"], "BIO")
    allowed, start, end = transition_constraints(tags, "BIO")
    ix = {t: i for i, t in enumerate(tags)}
    assert not allowed[ix["O"], ix["I-PER"]]
    assert not allowed[ix["B-LOC"], ix["I-PER"]]
    assert allowed[ix["B-PER"], ix["I-PER"]] and allowed[ix["I-PER"], ix["I-PER"]]
    assert allowed[ix["I-PER"], ix["B-PER"]] and allowed[ix["I-PER"], ix["O"]]
    assert not start[ix["I-PER"]] and end.all()


def test_greedy_would_be_invalid_but_viterbi_is_valid():
    """Per-token argmax gives O I-PER L-LOC; the decoder must return a valid sequence."""
    tags = make_tags(["PER", "LOC"], "BILUO")
    ix = {t: i for i, t in enumerate(tags)}
    probs = numpy.full((3, len(tags)), 0.01, dtype="f")
    probs[0, ix["O"]] = 0.6
    probs[0, ix["B-PER"]] = 0.3
    probs[1, ix["I-PER"]] = 0.7
    probs[2, ix["L-LOC"]] = 0.5
    probs[2, ix["L-PER"]] = 0.4
    probs /= probs.sum(axis=1, keepdims=True)
    log_probs = numpy.log(probs)
    greedy = log_probs.argmax(axis=1).tolist()
    decoder, constraints = decoder_for(tags, "BILUO")
    assert not is_valid_sequence(greedy, *constraints)
    path = decoder([log_probs])[0].tolist()
    assert is_valid_sequence(path, *constraints)
    assert [tags[i] for i in path] == ["B-PER", "I-PER", "L-PER"]
    assert path == brute_force_best(log_probs, constraints)


def test_unfinished_entity_at_end_is_closed():
    tags = make_tags(["ORG"], "BILUO")
    ix = {t: i for i, t in enumerate(tags)}
    log_probs = numpy.log(numpy.full((2, len(tags)), 0.02, dtype="f"))
    log_probs[0, ix["B-ORG"]] = numpy.log(0.9)
    log_probs[1, ix["I-ORG"]] = numpy.log(0.9)
    log_probs[1, ix["L-ORG"]] = numpy.log(0.05)
    decoder, constraints = decoder_for(tags, "BILUO")
    assert [tags[i] for i in decoder([log_probs])[0]] == ["B-ORG", "L-ORG"]


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_viterbi_equals_brute_force_on_random_scores(scheme):
    rng = numpy.random.default_rng(0)
    tags = make_tags(["A", "B"], scheme)
    decoder, constraints = decoder_for(tags, scheme)
    batch = [numpy.log(rng.dirichlet(numpy.ones(len(tags)) * 0.3, size=n)).astype("f") for n in (1, 2, 3, 4, 4, 2)]
    paths = decoder(batch)
    for log_probs, path in zip(batch, paths):
        assert path.tolist() == brute_force_best(log_probs, constraints)


def test_batch_decoding_equals_one_by_one():
    rng = numpy.random.default_rng(1)
    tags = make_tags(["A", "B", "C"], "BILUO")
    decoder, _ = decoder_for(tags, "BILUO")
    batch = [numpy.log(rng.dirichlet(numpy.ones(len(tags)), size=n)).astype("f") for n in (0, 7, 1, 150, 3, 0, 40)]
    together = decoder(batch)
    for log_probs, path in zip(batch, together):
        alone = decoder([log_probs])[0]
        assert path.tolist() == alone.tolist()
        assert len(path) == len(log_probs)


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_single_doc_viterbi_equals_the_batched_loop(scheme):
    """A doc decoded alone takes the vector loop (_decode_one); the batched
    loop (_decode_group) must find the same path, learned transitions included."""
    rng = numpy.random.default_rng(2)
    tags = make_tags(["A", "B", "C"], scheme)
    allowed, start, end = transition_constraints(tags, scheme)
    decoder = ConstrainedDecoder(allowed, start, end, transitions=rng.normal(0, 1, allowed.shape).astype("f"))
    for n in (1, 2, 5, 20, 90, 300):
        scores = rng.normal(0, 3, size=(n, len(tags))).astype("f")
        batched = [numpy.zeros(0, dtype="i")]
        decoder._decode_group([scores], numpy.array([n]), [0], batched)
        assert decoder([scores])[0].tolist() == batched[0].tolist()
