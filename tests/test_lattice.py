"""Forward-backward and the CRF loss against brute-force enumeration."""
import itertools

import numpy
import pytest

from spacy_rnn_ner.lattice import crf_loss_and_gradients, forward_backward
from spacy_rnn_ner.tag_scheme import IMPOSSIBLE, is_valid_sequence, make_tags, transition_constraints


def setup(scheme="BILUO", labels=("A", "B")):
    tags = make_tags(labels, scheme)
    allowed, start, end = transition_constraints(tags, scheme)
    rng = numpy.random.default_rng(0)
    learned = rng.normal(0, 0.5, allowed.shape)
    trans = numpy.where(allowed, learned, IMPOSSIBLE)
    return tags, (allowed, start, end), trans, numpy.where(start, 0.0, IMPOSSIBLE), numpy.where(end, 0.0, IMPOSSIBLE), learned


def enumerate_paths(scores, constraints, learned, allowed_tags=None):
    n, n_tags = scores.shape
    for seq in itertools.product(range(n_tags), repeat=n):
        if not is_valid_sequence(seq, *constraints):
            continue
        if allowed_tags is not None and not all(allowed_tags[i, t] for i, t in enumerate(seq)):
            continue
        score = sum(scores[i, t] for i, t in enumerate(seq)) + sum(learned[a, b] for a, b in zip(seq, seq[1:]))
        yield seq, score


def brute_force(scores, constraints, learned, allowed_tags=None):
    paths = list(enumerate_paths(scores, constraints, learned, allowed_tags))
    weights = numpy.exp([s for _, s in paths])
    log_z = numpy.log(weights.sum())
    marg = numpy.zeros_like(scores)
    pairs = numpy.zeros((scores.shape[1],) * 2)
    for (seq, _), w in zip(paths, weights / weights.sum()):
        for i, t in enumerate(seq):
            marg[i, t] += w
        for a, b in zip(seq, seq[1:]):
            pairs[a, b] += w
    return log_z, marg, pairs


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_marginals_match_enumeration(scheme):
    tags, constraints, trans, start, end, learned = setup(scheme)
    rng = numpy.random.default_rng(1)
    batch = [rng.normal(0, 1, (n, len(tags))) for n in (1, 3, 4)]
    result = forward_backward(batch, trans, start, end)
    for i, scores in enumerate(batch):
        log_z, marg, _ = brute_force(scores, constraints, learned)
        assert result.log_z[i] == pytest.approx(log_z, rel=1e-6)
        numpy.testing.assert_allclose(result.marginals[i], marg, atol=1e-5)
        numpy.testing.assert_allclose(result.marginals[i].sum(axis=1), 1.0, rtol=1e-5)
    expected_pairs = sum(brute_force(s, constraints, learned)[2] for s in batch)
    numpy.testing.assert_allclose(result.pair_counts, expected_pairs, atol=1e-5)


def test_crf_loss_is_gold_path_nll_and_gradients_match_finite_differences():
    tags, constraints, trans, start, end, learned = setup()
    ix = {t: i for i, t in enumerate(tags)}
    rng = numpy.random.default_rng(2)
    scores = rng.normal(0, 1, (3, len(tags)))
    gold = [ix["B-A"], ix["L-A"], ix["O"]]
    mask = numpy.zeros_like(scores, dtype=bool)
    mask[numpy.arange(3), gold] = True
    loss, d_scores, d_trans = crf_loss_and_gradients([scores], [mask], trans, start, end)
    log_z, _, _ = brute_force(scores, constraints, learned)
    gold_score = scores[numpy.arange(3), gold].sum() + learned[gold[0], gold[1]] + learned[gold[1], gold[2]]
    assert loss == pytest.approx(log_z - gold_score, rel=1e-5)
    eps = 1e-4
    for (i, j) in [(0, ix["B-A"]), (1, ix["I-A"]), (2, ix["U-B"])]:
        bumped = scores.copy()
        bumped[i, j] += eps
        up = crf_loss_and_gradients([bumped], [mask], trans, start, end)[0]
        assert d_scores[0][i, j] == pytest.approx((up - loss) / eps, abs=1e-3)
    a, b = ix["B-A"], ix["L-A"]
    bumped_trans = trans.copy()
    bumped_trans[a, b] += eps
    up = crf_loss_and_gradients([scores], [mask], bumped_trans, start, end)[0]
    assert d_trans[a, b] == pytest.approx((up - loss) / eps, abs=1e-3)


def test_missing_gold_is_marginalised():
    tags, constraints, trans, start, end, learned = setup()
    rng = numpy.random.default_rng(3)
    scores = rng.normal(0, 1, (3, len(tags)))
    everything = numpy.ones_like(scores, dtype=bool)
    loss, d_scores, d_trans = crf_loss_and_gradients([scores], [everything], trans, start, end)
    # With no gold at all, the clamped and free lattices agree: nothing to learn.
    assert loss == pytest.approx(0.0, abs=1e-6)
    assert numpy.abs(d_scores[0]).max() < 1e-6 and numpy.abs(d_trans).max() < 1e-6


def test_unreachable_gold_is_skipped_not_exploding():
    tags, constraints, trans, start, end, learned = setup()
    ix = {t: i for i, t in enumerate(tags)}
    scores = numpy.zeros((2, len(tags)))
    mask = numpy.zeros_like(scores, dtype=bool)
    mask[0, ix["O"]] = mask[1, ix["L-A"]] = True  # O then L-A is invalid under BILUO
    loss, d_scores, _ = crf_loss_and_gradients([scores, scores[:1]], [mask, mask[:1]], trans, start, end)
    assert numpy.isfinite(loss) and abs(loss) < 100
    assert numpy.abs(d_scores[0]).sum() == 0


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 64, 300])
def test_single_doc_recursions_match_the_batched_ones(n):
    """A single doc's forward and backward tables come from a vector loop
    (lattice._single_recursions); they must equal the batched ones."""
    from spacy_rnn_ner.lattice import _scaled_recursions, _single_recursions

    tags, constraints, trans, start, end, _ = setup(labels=("A", "B", "C", "D"))
    rng = numpy.random.default_rng(n)
    emit = rng.normal(0, 4, size=(1, n, len(tags)))
    batch_alpha, batch_beta = _scaled_recursions(emit, trans, start, end, numpy.array([n - 1]))
    one_alpha, one_beta = _single_recursions(emit, trans, start, end)
    for batched, single in ((batch_alpha, one_alpha), (batch_beta, one_beta)):
        finite = numpy.isfinite(batched)
        assert numpy.array_equal(finite, numpy.isfinite(single))
        numpy.testing.assert_allclose(single[finite], batched[finite], rtol=1e-9, atol=1e-9)


def test_single_doc_marginals_equal_those_computed_in_a_batch():
    """One doc alone takes the vector loop; beside a second doc, the batched one."""
    tags, constraints, trans, start, end, _ = setup()
    rng = numpy.random.default_rng(3)
    doc, other = rng.normal(0, 3, size=(20, len(tags))), rng.normal(0, 3, size=(21, len(tags)))
    alone = forward_backward([doc], trans, start, end, want_pairs=False)
    batched = forward_backward([doc, other], trans, start, end, want_pairs=False)
    numpy.testing.assert_allclose(alone.marginals[0], batched.marginals[0], rtol=1e-5, atol=1e-6)
    numpy.testing.assert_allclose(alone.log_z[0], batched.log_z[0], rtol=1e-9)
