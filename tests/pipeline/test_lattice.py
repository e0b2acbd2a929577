"""The tag lattice: tags and constraints, Viterbi, forward-backward, the CRF
loss and span confidences, each against brute-force enumeration of the paths."""
import numpy
import pytest
from spacy.training.iob_utils import iob_to_biluo

from spacy_rnn_ner.pipeline.lattice import (
    IMPOSSIBLE,
    TagLattice,
    _recursions,
    _recursions_one,
    _viterbi_group,
    biluo_to_scheme,
    make_tags,
    transition_constraints,
    viterbi_one,
)

from tests.helpers import enumerate_paths, is_valid_sequence


def setup(scheme="BILUO", labels=("A", "B")):
    lattice = TagLattice(labels, scheme)
    rng = numpy.random.default_rng(0)
    learned = rng.normal(0, 0.5, lattice.allowed.shape)
    return lattice, lattice.transitions(learned).astype("f8"), learned


def constraints(lattice):
    return lattice.allowed, lattice.start > IMPOSSIBLE / 2, lattice.end > IMPOSSIBLE / 2


def brute_force(scores, lattice, learned, allowed_tags=None):
    paths = list(enumerate_paths(scores, constraints(lattice), learned, allowed_tags))
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


def brute_force_best(scores, lattice, learned=None):
    return list(max(enumerate_paths(scores, constraints(lattice), learned), key=lambda p: p[1])[0])


# -- tags and constraints ------------------------------------------------------


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
def test_bio_spans_match_spacy(bio):
    from spacy.training.iob_utils import tags_to_entities

    lattice = TagLattice(["PER", "LOC", "ORG", "MISC"], "BIO")
    expected = [(start, end + 1, label) for label, start, end in tags_to_entities(iob_to_biluo(bio))]
    assert lattice.spans([lattice.index[tag] for tag in bio]) == expected


@pytest.mark.parametrize("label", ["creative-work", "B-thing", "U-boat", "L-", "a b", "ünï", "x", "O"])
@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_labels_with_separators_and_prefixes_round_trip(label, scheme):
    """Tags split at the first '-', so any label comes back as it went in."""
    lattice = TagLattice(["PER", label], scheme)
    gold = ["B-" + label, "I-" + label, "L-" + label, "O", "U-" + label]
    tags = biluo_to_scheme(gold, scheme)
    path = [lattice.index[tag] for tag in tags]
    assert is_valid_sequence(path, *constraints(lattice))
    assert lattice.spans(path) == [(0, 3, label), (4, 5, label)]


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
    lattice = TagLattice(["PER", "LOC"], "BILUO")
    assert not is_valid_sequence(greedy, *constraints(lattice))
    path = lattice.decode([log_probs], lattice.transitions())[0].tolist()
    assert is_valid_sequence(path, *constraints(lattice))
    assert [tags[i] for i in path] == ["B-PER", "I-PER", "L-PER"]
    assert path == brute_force_best(log_probs, lattice)


def test_unfinished_entity_at_end_is_closed():
    tags = make_tags(["ORG"], "BILUO")
    ix = {t: i for i, t in enumerate(tags)}
    log_probs = numpy.log(numpy.full((2, len(tags)), 0.02, dtype="f"))
    log_probs[0, ix["B-ORG"]] = numpy.log(0.9)
    log_probs[1, ix["I-ORG"]] = numpy.log(0.9)
    log_probs[1, ix["L-ORG"]] = numpy.log(0.05)
    lattice = TagLattice(["ORG"], "BILUO")
    assert [tags[i] for i in lattice.decode([log_probs], lattice.transitions())[0]] == ["B-ORG", "L-ORG"]


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_viterbi_equals_brute_force_on_random_scores(scheme):
    rng = numpy.random.default_rng(0)
    lattice, trans, learned = setup(scheme)
    batch = [numpy.log(rng.dirichlet(numpy.ones(lattice.n_tags) * 0.3, size=n)).astype("f") for n in (1, 2, 3, 4, 4, 2)]
    paths = lattice.decode(batch, trans)
    for log_probs, path in zip(batch, paths):
        assert path.tolist() == brute_force_best(log_probs, lattice, learned)




@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_single_doc_viterbi_equals_the_batched_loop(scheme):
    """Fast path: a doc decoded alone takes the vector loop (viterbi_one); the
    batched loop must find the same path, learned transitions included, for
    docs of any length, and a batch (empty docs, length groups) gives each
    doc the path it gets alone."""
    rng = numpy.random.default_rng(2)
    lattice = TagLattice(["A", "B", "C"], scheme)
    trans = lattice.transitions(rng.normal(0, 1, lattice.allowed.shape))
    start, end = lattice.start.astype("f"), lattice.end.astype("f")
    batch = [rng.normal(0, 3, size=(n, lattice.n_tags)).astype("f") for n in (1, 2, 5, 0, 20, 90, 300, 0, 7)]
    together = lattice.decode(batch, trans)
    for scores, path in zip(batch, together):
        assert len(path) == len(scores)
        if len(scores):
            alone = viterbi_one(scores, trans, start, end).tolist()
            assert alone == _viterbi_group([scores], trans, start, end)[0].tolist() == path.tolist()


# -- forward-backward and the CRF loss ----------------------------------------


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_marginals_match_enumeration(scheme):
    lattice, trans, learned = setup(scheme)
    rng = numpy.random.default_rng(1)
    batch = [rng.normal(0, 1, (n, lattice.n_tags)) for n in (1, 3, 4)]
    result = lattice.forward_backward(batch, trans)
    for i, scores in enumerate(batch):
        log_z, marg, _ = brute_force(scores, lattice, learned)
        assert result.log_z[i] == pytest.approx(log_z, rel=1e-6)
        numpy.testing.assert_allclose(result.marginals[i], marg, atol=1e-5)
        numpy.testing.assert_allclose(result.marginals[i].sum(axis=1), 1.0, rtol=1e-5)
    expected_pairs = sum(brute_force(s, lattice, learned)[2] for s in batch)
    numpy.testing.assert_allclose(result.pair_counts, expected_pairs, atol=1e-5)


def test_crf_loss_is_gold_path_nll_and_gradients_match_finite_differences():
    lattice, trans, learned = setup()
    ix = lattice.index
    rng = numpy.random.default_rng(2)
    scores = rng.normal(0, 1, (3, lattice.n_tags))
    gold = [ix["B-A"], ix["L-A"], ix["O"]]
    mask = numpy.zeros_like(scores, dtype=bool)
    mask[numpy.arange(3), gold] = True
    loss, d_scores, d_trans = lattice.crf_loss([scores], [mask], trans)
    log_z, _, _ = brute_force(scores, lattice, learned)
    gold_score = scores[numpy.arange(3), gold].sum() + learned[gold[0], gold[1]] + learned[gold[1], gold[2]]
    assert loss == pytest.approx(log_z - gold_score, rel=1e-5)
    eps = 1e-4
    for (i, j) in [(0, ix["B-A"]), (1, ix["I-A"]), (2, ix["U-B"])]:
        bumped = scores.copy()
        bumped[i, j] += eps
        up = lattice.crf_loss([bumped], [mask], trans)[0]
        assert d_scores[0][i, j] == pytest.approx((up - loss) / eps, abs=1e-3)
    a, b = ix["B-A"], ix["L-A"]
    bumped_trans = trans.copy()
    bumped_trans[a, b] += eps
    up = lattice.crf_loss([scores], [mask], bumped_trans)[0]
    assert d_trans[a, b] == pytest.approx((up - loss) / eps, abs=1e-3)


def test_missing_gold_is_marginalised():
    lattice, trans, learned = setup()
    rng = numpy.random.default_rng(3)
    scores = rng.normal(0, 1, (3, lattice.n_tags))
    everything = numpy.ones_like(scores, dtype=bool)
    loss, d_scores, d_trans = lattice.crf_loss([scores], [everything], trans)
    # With no gold at all, the clamped and free lattices agree: nothing to learn.
    assert loss == pytest.approx(0.0, abs=1e-6)
    assert numpy.abs(d_scores[0]).max() < 1e-6 and numpy.abs(d_trans).max() < 1e-6


def test_unreachable_gold_is_skipped_not_exploding():
    lattice, trans, learned = setup()
    ix = lattice.index
    scores = numpy.zeros((2, lattice.n_tags))
    mask = numpy.zeros_like(scores, dtype=bool)
    mask[0, ix["O"]] = mask[1, ix["L-A"]] = True  # O then L-A is invalid under BILUO
    loss, d_scores, _ = lattice.crf_loss([scores, scores[:1]], [mask, mask[:1]], trans)
    assert numpy.isfinite(loss) and abs(loss) < 100
    assert numpy.abs(d_scores[0]).sum() == 0


def test_crf_loss_reads_fully_known_gold_off_its_path():
    """Fast path: a doc with one gold tag per token gets its clamped log_z,
    marginals and pair counts from the path itself; they must equal the
    clamped forward-backward's, in a batch that also holds partly annotated,
    unreachable and empty docs."""
    lattice, trans, _ = setup()
    rng = numpy.random.default_rng(4)
    tags = [["U-A"], ["B-A", "I-A", "L-A", "O", "U-B"], ["O"] * 30 + ["B-B", "L-B"], ["O", "L-A"], []]
    scores = [rng.normal(0, 2, (len(t), lattice.n_tags)) for t in tags]
    masks = [lattice.tag_mask(t) for t in tags]
    partial = lattice.tag_mask(["B-A", None, "L-A", "O"])  # one token without gold
    scores.append(rng.normal(0, 2, (4, lattice.n_tags)))
    masks.append(partial)
    loss, d_scores, d_trans = lattice.crf_loss(scores, masks, trans)
    keep = [0, 1, 2, 5]  # "O L-A" cannot be reached; the empty doc adds nothing
    clamped = lattice.forward_backward([scores[i] for i in keep], trans, [masks[i] for i in keep])
    free = lattice.forward_backward([scores[i] for i in keep], trans)
    assert loss == pytest.approx(float((free.log_z - clamped.log_z).sum()), rel=1e-9)
    for j, i in enumerate(keep):
        numpy.testing.assert_allclose(d_scores[i], free.marginals[j] - clamped.marginals[j], atol=1e-6)
    assert not d_scores[3].any() and d_scores[4].shape == (0, lattice.n_tags)
    numpy.testing.assert_allclose(d_trans, free.pair_counts - clamped.pair_counts, atol=1e-6)


@pytest.mark.parametrize("spread", [4, 40])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 20, 64, 300])
def test_single_doc_recursions_match_the_batched_ones(n, spread):
    """Fast path: a single doc's forward and backward tables come from a
    vector loop (_recursions_one) that rescales only when the values leave a
    range; they must equal the batched ones, also where scores spread over
    a hundred nats and more (where the loop rescales at many positions)."""
    lattice, trans, _ = setup(labels=("A", "B", "C", "D"))
    rng = numpy.random.default_rng(n)
    emit = rng.normal(0, spread, size=(1, n, lattice.n_tags))
    batch_alpha, batch_beta = _recursions(emit, trans, lattice.start, lattice.end, numpy.array([n - 1]))
    one_alpha, one_beta = _recursions_one(emit[0], trans, lattice.start, lattice.end)
    one_alpha, one_beta = one_alpha[None], one_beta[None]
    for batched, single in ((batch_alpha, one_alpha), (batch_beta, one_beta)):
        # Equal wherever a value matters: within 500 nats of its row's largest
        # (a tag exp(-500) times less likely than the best may underflow to 0).
        matters = batched > batched.max(axis=2, keepdims=True) - 500
        numpy.testing.assert_allclose(single[matters], batched[matters], rtol=1e-9, atol=1e-9)
        assert (numpy.isfinite(single) <= numpy.isfinite(batched)).all()
    # Through forward_backward: alone (the vector loop) and beside another doc (the batched one).
    doc, other = emit[0], rng.normal(0, 3, size=(n + 1, lattice.n_tags))
    alone = lattice.forward_backward([doc], trans, want_pairs=False)
    batched = lattice.forward_backward([doc, other], trans, want_pairs=False)
    numpy.testing.assert_allclose(alone.marginals[0], batched.marginals[0], rtol=1e-5, atol=1e-6)
    numpy.testing.assert_allclose(alone.log_z[0], batched.log_z[0], rtol=1e-9)




# -- span confidences ------------------------------------------------------------


def brute_force_span_probability(scores, lattice, learned, span):
    """Sum exp(score) over valid sequences containing exactly this labelled span."""
    total = hit = 0.0
    for seq, score in enumerate_paths(scores, constraints(lattice), learned):
        total += numpy.exp(score)
        if span in lattice.spans(seq):
            hit += numpy.exp(score)
    return hit / total


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_span_marginals_match_enumeration(scheme):
    lattice, trans, learned = setup(scheme)
    rng = numpy.random.default_rng(0)
    for trial in range(3):
        scores = rng.normal(0, 1.5, (4, lattice.n_tags))
        result = lattice.forward_backward([scores], trans, want_pairs=False, keep_tables=True)
        # Every span of every label, as a path of tags, scored against enumeration.
        for i, j, label in [(0, 1, "A"), (1, 3, "B"), (0, 4, "A"), (3, 4, "B"), (2, 4, "A")]:
            if scheme == "BILUO":
                path = [f"U-{label}"] if j - i == 1 else [f"B-{label}"] + [f"I-{label}"] * (j - i - 2) + [f"L-{label}"]
            else:
                path = [f"B-{label}"] + [f"I-{label}"] * (j - i - 1)
            tag_ids = [0] * i + [lattice.index[t] for t in path] + [0] * (4 - j)
            got = lattice.span_probabilities(result, 0, scores, trans, tag_ids, [(i, j, label)])[0]
            expected = brute_force_span_probability(scores, lattice, learned, (i, j, label))
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_token_masks_restrict_decoding_and_marginals(scheme):
    """A per-token mask (preset entities, whitespace) is exactly a restriction of the path set."""
    lattice, trans, learned = setup(scheme)
    rng = numpy.random.default_rng(4)
    scores = rng.normal(0, 1, (4, lattice.n_tags))
    mask = numpy.ones_like(scores, dtype=bool)
    mask[1] = lattice.masks_for(["O"])
    masked = scores + numpy.where(mask, 0.0, IMPOSSIBLE)
    path = lattice.decode([masked.astype("f")], trans)[0].tolist()
    best = max(enumerate_paths(scores, constraints(lattice), learned, mask), key=lambda p: p[1])[0]
    assert path == list(best) and lattice.tags[path[1]] == "O"
    result = lattice.forward_backward([masked], trans)
    log_z, marg, _ = brute_force(scores, lattice, learned, allowed_tags=mask)
    assert result.log_z[0] == pytest.approx(log_z, rel=1e-6)
    numpy.testing.assert_allclose(result.marginals[0], marg, atol=1e-5)
