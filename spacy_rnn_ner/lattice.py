"""Forward-backward over the constrained tag lattice: the CRF loss and its
gradients, and tag marginals.

Scores are per-token tag scores (n_tokens, n_tags), plus a (n_tags, n_tags)
transition matrix in which forbidden transitions hold IMPOSSIBLE, and start
and end vectors (0 or IMPOSSIBLE). Docs are padded and processed together,
one numpy step per position.
"""
from typing import List, Optional, Sequence, Tuple

import numpy

from .tag_scheme import IMPOSSIBLE, length_groups


def _logsumexp(x: numpy.ndarray, axis: int) -> numpy.ndarray:
    top = x.max(axis=axis, keepdims=True)
    top = numpy.where(numpy.isfinite(top), top, 0.0)  # rows that are all -inf stay -inf, not NaN
    with numpy.errstate(divide="ignore"):
        return (top + numpy.log(numpy.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _pad(arrays: Sequence[numpy.ndarray], n_tags: int, fill: float = 0.0) -> numpy.ndarray:
    max_len = max(len(a) for a in arrays)
    out = numpy.full((len(arrays), max_len, n_tags), fill, dtype="f8")
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


class LatticeResult:
    """What forward-backward computes for a batch: log partition values,
    per-token marginals and expected transition counts (summed over the batch)."""

    def __init__(self, log_z: numpy.ndarray, marginals: List[numpy.ndarray], pair_counts: numpy.ndarray) -> None:
        self.log_z = log_z
        self.marginals = marginals
        self.pair_counts = pair_counts
        # Per doc, the forward and backward log-scores (n_tokens, n_tags), when kept.
        self.alpha: List[numpy.ndarray] = []
        self.beta: List[numpy.ndarray] = []


def forward_backward(
    scores: Sequence[numpy.ndarray],
    trans: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
    allowed_tags: Optional[Sequence[numpy.ndarray]] = None,
    want_pairs: bool = True,
    keep_tables: bool = False,
) -> LatticeResult:
    """Sum over all valid tag sequences of each doc (optionally restricted per token).

    allowed_tags: per doc, a (n_tokens, n_tags) boolean array of the tags each
    token may take (e.g. only its gold tag, or all tags where gold is missing).
    Empty docs get log_z 0 and empty marginals.
    """
    n_tags = trans.shape[0]
    lengths = [len(s) for s in scores]
    result = LatticeResult(
        numpy.zeros(len(scores), dtype="f8"),
        [numpy.zeros((n, n_tags), dtype="f") for n in lengths],
        numpy.zeros((n_tags, n_tags), dtype="f8"),
    )
    if keep_tables:
        result.alpha = [numpy.zeros((0, n_tags)) for _ in scores]
        result.beta = [numpy.zeros((0, n_tags)) for _ in scores]
    for group in length_groups(lengths):
        _forward_backward_group(scores, trans, start, end, allowed_tags, want_pairs, keep_tables, group, result)
    return result


def _forward_backward_group(
    scores: Sequence[numpy.ndarray],
    trans: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
    allowed_tags: Optional[Sequence[numpy.ndarray]],
    want_pairs: bool,
    keep_tables: bool,
    group: List[int],
    result: LatticeResult,
) -> None:
    """Forward-backward over the docs in `group` (all non-empty), padded together."""
    n_tags = trans.shape[0]
    emit = _pad([scores[i] for i in group], n_tags)
    if allowed_tags is not None:
        emit += numpy.where(_pad([allowed_tags[i] for i in group], n_tags, fill=1.0) > 0, 0.0, IMPOSSIBLE)
    lens = numpy.array([len(scores[i]) for i in group])
    batch, max_len = emit.shape[0], emit.shape[1]
    trans64 = trans.astype("f8")
    last = lens - 1
    rows = numpy.arange(batch)
    alpha, beta = _scaled_recursions(emit, trans64, start, end, last)
    z = _logsumexp(alpha[rows, last] + end[None, :], axis=1)
    for row, i in enumerate(group):
        n = lens[row]
        if numpy.isfinite(z[row]):  # else no valid sequence: marginals stay 0
            result.marginals[i] = numpy.exp(alpha[row, :n] + beta[row, :n] - z[row]).astype("f")
        result.log_z[i] = z[row]
        if keep_tables:
            result.alpha[i] = alpha[row, :n]
            result.beta[i] = beta[row, :n]
    if want_pairs:
        for t in range(1, max_len):
            inside = (lens > t) & numpy.isfinite(z)
            if not inside.any():
                break
            pair = (
                alpha[inside, t - 1, :, None]
                + trans64[None]
                + (emit[inside, t] + beta[inside, t])[:, None, :]
                - z[inside, None, None]
            )
            result.pair_counts += numpy.exp(pair).sum(axis=0)


def _scaled_recursions(
    emit: numpy.ndarray, trans: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray, last: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Log forward and backward tables, computed in probability space with
    per-step rescaling (one small matrix product per position) rather than a
    log-sum-exp per position: the same values, several times fewer numpy calls,
    which is what per-sentence latency is made of."""
    batch, max_len, n_tags = emit.shape
    trans_p = numpy.exp(trans)  # forbidden transitions become exactly 0
    top = emit.max(axis=2)
    prob = numpy.exp(emit - top[:, :, None])
    log_alpha = numpy.empty_like(emit)
    log_beta = numpy.empty_like(emit)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        a = prob[:, 0] * numpy.exp(start)[None, :]
        acc = numpy.zeros(batch)
        for t in range(max_len):
            if t > 0:
                a = (a @ trans_p) * prob[:, t]
            scale = a.sum(axis=1)
            scale = numpy.where(scale > 0, scale, 1e-300)
            a /= scale[:, None]
            acc += numpy.log(scale) + top[:, t]
            log_alpha[:, t] = numpy.log(a) + acc[:, None]
        end_p = numpy.exp(end)
        b = numpy.repeat(end_p[None, :], batch, axis=0)
        acc = numpy.zeros(batch)
        log_beta[:, max_len - 1] = numpy.log(b)
        for t in range(max_len - 2, -1, -1):
            b = (prob[:, t + 1] * b) @ trans_p.T
            scale = b.sum(axis=1)
            scale = numpy.where(scale > 0, scale, 1e-300)
            b /= scale[:, None]
            acc += numpy.log(scale) + top[:, t + 1]
            ending = last == t
            b[ending] = end_p
            acc[ending] = 0.0
            log_beta[:, t] = numpy.log(b) + acc[:, None]
    return log_alpha, log_beta


def span_probabilities(
    result: LatticeResult,
    doc_index: int,
    scores: numpy.ndarray,
    trans: numpy.ndarray,
    end: numpy.ndarray,
    tag_ids: Sequence[int],
    spans: Sequence[Tuple[int, int]],
    continue_tag: Optional[Sequence[int]] = None,
) -> List[float]:
    """The probability of each span having exactly the tags `tag_ids` gives it.

    For a span [i, j) this sums the lattice over all sequences that agree with
    tag_ids on tokens i..j-1: alpha at i, the fixed path inside, beta at j-1.
    continue_tag (BIO only): per span, the tag that would extend it past j
    (I-X), which the next token must not take for the span to end at j.
    """
    alpha, beta, log_z = result.alpha[doc_index], result.beta[doc_index], result.log_z[doc_index]
    n = len(scores)
    probs = []
    for k, (i, j) in enumerate(spans):
        path = tag_ids[i:j]
        log_p = alpha[i, path[0]]
        for t in range(i + 1, j):
            log_p += trans[path[t - i - 1], path[t - i]] + scores[t, path[t - i]]
        last = path[-1]
        if continue_tag is None or continue_tag[k] is None:
            log_p += beta[j - 1, last]
        elif j == n:
            log_p += end[last]
        else:
            nxt = trans[last] + scores[j] + beta[j]
            nxt = numpy.delete(nxt, continue_tag[k])
            top = nxt.max()
            log_p += top + numpy.log(numpy.exp(nxt - top).sum())
        probs.append(float(min(1.0, numpy.exp(log_p - log_z))))
    return probs


def crf_loss_and_gradients(
    scores: Sequence[numpy.ndarray],
    gold_allowed: Sequence[numpy.ndarray],
    trans: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> Tuple[float, List[numpy.ndarray], numpy.ndarray]:
    """Negative log-likelihood of the gold tags under a linear-chain CRF.

    Where gold is missing, gold_allowed lets every tag through, so the loss
    marginalises over those tokens (partial annotation). Returns the summed
    loss, d_loss/d_scores per doc and d_loss/d_trans.
    """
    clamped = forward_backward(scores, trans, start, end, allowed_tags=gold_allowed)
    # A doc whose gold cannot be reached under the constraints (log_z of the
    # clamped lattice near IMPOSSIBLE) is left out rather than given a huge loss.
    keep = [i for i, z in enumerate(clamped.log_z) if z > IMPOSSIBLE / 2]
    d_scores = [numpy.zeros_like(s, dtype="f") for s in scores]
    if len(keep) < len(scores):
        if not keep:
            return 0.0, d_scores, numpy.zeros_like(trans, dtype="f")
        scores = [scores[i] for i in keep]
        clamped = forward_backward(scores, trans, start, end, allowed_tags=[gold_allowed[i] for i in keep])
    free = forward_backward(scores, trans, start, end)
    loss = float((free.log_z - clamped.log_z).sum())
    for j, i in enumerate(keep):
        d_scores[i] = free.marginals[j] - clamped.marginals[j]
    return loss, d_scores, (free.pair_counts - clamped.pair_counts).astype("f")
