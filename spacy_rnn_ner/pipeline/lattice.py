"""The tag lattice: entity labels as BILUO or BIO tags, which tag may follow
which, and the dynamic programs over per-token tag scores that training,
decoding and confidences share (Viterbi, forward-backward, the CRF loss).

It knows about tags and arrays only: nothing here touches Docs, thinc or torch.
Scores are (n_tokens, n_tags) arrays; a transition matrix holds IMPOSSIBLE
where the scheme forbids a transition. A per-token mask of allowed tags
restricts a doc further (gold tags in the CRF loss, preset entities and
whitespace tokens in decoding).
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy

from ..util import length_groups, pad

SCHEMES = ("BILUO", "BIO")
# Not an entity scheme: the tags are the labels themselves (token tags such as
# part-of-speech), in any order, with no 'O' tag and no constraints.
TOKEN_TAGS = "TAGS"
OUT = "O"
# A large negative number stands in for log(0): -inf would turn 0 * -inf into
# NaN in vectorised sums, and this is far below any real log-probability sum.
IMPOSSIBLE = -1e9
Span3 = Tuple[int, int, str]


def check_scheme(scheme: str) -> str:
    """Normalise a scheme name, raising a clear error for unknown ones."""
    name = str(scheme).upper()
    if name not in SCHEMES:
        raise ValueError(f"[rnn_tagger] Unknown tag scheme '{scheme}'. Set `scheme` to one of {', '.join(SCHEMES)}.")
    return name


def make_tags(labels: Iterable[str], scheme: str = "BILUO") -> List[str]:
    """The tag inventory for entity labels: 'O' first, then each label's tags
    (for TOKEN_TAGS, the labels themselves)."""
    if scheme == TOKEN_TAGS:
        return list(labels)
    prefixes = "BILU" if check_scheme(scheme) == "BILUO" else "BI"
    return [OUT] + [f"{prefix}-{label}" for label in labels for prefix in prefixes]


def split_tag(tag: str) -> Tuple[str, str]:
    """('B', 'PER') for 'B-PER'; ('O', '') for 'O'. The label is everything after
    the first '-', so labels may contain '-' themselves ('B-creative-work')."""
    if tag == OUT:
        return OUT, ""
    prefix, _, label = tag.partition("-")
    return prefix, label


def biluo_to_scheme(tags: Sequence[Optional[str]], scheme: str) -> List[Optional[str]]:
    """Rewrite gold BILUO tags (None or '-' where there is no gold) into `scheme`.

    spaCy's `biluo_to_iob` replaces the first 'U-'/'L-' anywhere in the tag,
    which corrupts labels that contain one ('I-U-boat' becomes 'I-B-boat'), so
    the prefix is rewritten here. The missing-gold markers are kept as they are.
    """
    if check_scheme(scheme) == "BILUO":
        return list(tags)
    rewrite = {"L": "I", "U": "B"}
    out: List[Optional[str]] = []
    for tag in tags:
        if tag is None or tag in ("-", OUT):
            out.append(tag)
        else:
            prefix, label = split_tag(tag)
            out.append(f"{rewrite.get(prefix, prefix)}-{label}")
    return out


def transition_constraints(tags: Sequence[str], scheme: str) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Which tag sequences are valid, as three boolean arrays.

    Returns (allowed, start, end): allowed[i, j] says tag j may follow tag i;
    start[j] says a doc may begin with tag j; end[i] says a doc may end with tag i.
    """
    if scheme == TOKEN_TAGS:
        everywhere = numpy.ones(len(tags), dtype=bool)
        return numpy.ones((len(tags), len(tags)), dtype=bool), everywhere, everywhere
    biluo = check_scheme(scheme) == "BILUO"
    prefixes = numpy.array([split_tag(tag)[0] for tag in tags])
    labels = numpy.array([split_tag(tag)[1] for tag in tags], dtype=object)
    same_label = labels[:, None] == labels[None, :]
    if biluo:
        is_open = numpy.isin(prefixes, ["B", "I"])
        continues = numpy.isin(prefixes, ["I", "L"])
        allowed = numpy.where(is_open[:, None], continues[None, :] & same_label, ~continues[None, :])
        start, end = ~continues, ~is_open
    else:
        inside = prefixes == "I"
        allowed = ~inside[None, :] | (numpy.isin(prefixes, ["B", "I"])[:, None] & same_label)
        start, end = ~inside, numpy.ones(len(tags), dtype=bool)
    return allowed, start, end


class LatticeResult:
    """What forward-backward computes for a batch: log partition values,
    per-token marginals, expected transition counts (summed over the batch)
    and, when kept, each doc's forward and backward log tables."""

    def __init__(self, lengths: Sequence[int], n_tags: int, keep_tables: bool) -> None:
        self.log_z = numpy.zeros(len(lengths), dtype="f8")
        self.marginals = [numpy.zeros((n, n_tags), dtype="f") for n in lengths]
        self.pair_counts = numpy.zeros((n_tags, n_tags), dtype="f8")
        self.alpha: List[numpy.ndarray] = [numpy.zeros((0, n_tags))] * len(lengths) if keep_tables else []
        self.beta: List[numpy.ndarray] = list(self.alpha)


class TagLattice:
    """The tags of a label set under a scheme, with the constrained dynamic programs over them."""

    def __init__(self, labels: Sequence[str], scheme: str) -> None:
        self.labels = tuple(labels)
        self.scheme = scheme if scheme == TOKEN_TAGS else check_scheme(scheme)
        self.tags = make_tags(self.labels, self.scheme)
        self.index: Dict[str, int] = {tag: i for i, tag in enumerate(self.tags)}
        self.allowed, start, end = transition_constraints(self.tags, self.scheme)
        self.start = numpy.where(start, 0.0, IMPOSSIBLE)
        self.end = numpy.where(end, 0.0, IMPOSSIBLE)
        parts = [split_tag(tag) for tag in self.tags]
        self._prefix = numpy.array([p for p, _ in parts])
        self._label = [label for _, label in parts]
        # Per tag: does it open / close / continue a span (read by `spans`).
        self._opens = numpy.isin(self._prefix, ["B", "U"] if self.scheme == "BILUO" else ["B"])
        self._closes = numpy.isin(self._prefix, ["L", "U"])
        self._inside = numpy.isin(self._prefix, ["B", "I"])
        self._is_i = self._prefix == "I"
        # The label of each tag column ('' for 'O'); a token tag is its own label.
        self.tag_labels: List[str] = list(self.tags) if self.scheme == TOKEN_TAGS else self._label

    @property
    def n_tags(self) -> int:
        return len(self.tags)

    def transitions(self, learned: Optional[numpy.ndarray] = None) -> numpy.ndarray:
        """Transition scores: `learned` (a CRF's) or 0 where allowed, IMPOSSIBLE elsewhere."""
        values = 0.0 if learned is None else learned
        return numpy.where(self.allowed, values, IMPOSSIBLE).astype("f")

    def tag_mask(self, tags: Sequence[Optional[str]]) -> numpy.ndarray:
        """(n_tokens, n_tags) booleans: only the given tag, or every tag where it is None or unknown."""
        mask = numpy.ones((len(tags), self.n_tags), dtype=bool)
        for i, tag in enumerate(tags):
            column = self.index.get(tag) if tag is not None else None
            if column is not None:
                mask[i] = False
                mask[i, column] = True
        return mask

    def masks_for(self, prefixes: Sequence[str]) -> numpy.ndarray:
        """(n_tags,) booleans: the tags whose prefix is one of `prefixes` ('O' for outside)."""
        return numpy.isin(self._prefix, list(prefixes))

    def decode(self, scores: Sequence[numpy.ndarray], trans: numpy.ndarray) -> List[numpy.ndarray]:
        """The best valid tag-id path of each doc (exact Viterbi)."""
        return viterbi(scores, trans, self.start, self.end)

    def forward_backward(
        self,
        scores: Sequence[numpy.ndarray],
        trans: numpy.ndarray,
        allowed_tags: Optional[Sequence[numpy.ndarray]] = None,
        want_pairs: bool = True,
        keep_tables: bool = False,
    ) -> LatticeResult:
        """Sums over the valid tag sequences of each doc (see `forward_backward`)."""
        return forward_backward(scores, trans, self.start, self.end, allowed_tags, want_pairs, keep_tables)

    def crf_loss(
        self, scores: Sequence[numpy.ndarray], gold_allowed: Sequence[numpy.ndarray], trans: numpy.ndarray
    ) -> Tuple[float, List[numpy.ndarray], numpy.ndarray]:
        """Negative log-likelihood of the gold tags under a linear-chain CRF.

        Where gold is missing, gold_allowed lets every tag through, so the loss
        marginalises over those tokens (partial annotation). Returns the summed
        loss, d_loss/d_scores per doc and d_loss/d_trans.
        """
        n_docs = len(scores)
        trans64 = trans.astype("f8")
        clamped_z = numpy.zeros(n_docs)
        # Docs whose gold is one valid tag per token (most of a fully annotated
        # corpus): the clamped lattice holds that one path, so its log_z is the
        # path's score, its marginals are the path and its pair counts are the
        # path's transitions. Reading those off the path costs a few array
        # operations instead of a second forward-backward over the batch.
        paths = self._valid_gold_paths(gold_allowed, trans64)
        for i, path in paths.items():
            clamped_z[i] = _path_score(scores[i], path, trans64, self.start, self.end)
        others = [i for i in range(n_docs) if i not in paths]
        if others:
            partial = self.forward_backward([scores[i] for i in others], trans, [gold_allowed[i] for i in others])
            clamped_z[others] = partial.log_z
        # A doc whose gold cannot be reached under the constraints (log_z of the
        # clamped lattice near IMPOSSIBLE) is left out rather than given a huge loss.
        keep = [i for i in range(n_docs) if clamped_z[i] > IMPOSSIBLE / 2]
        d_scores = [numpy.zeros_like(s, dtype="f") for s in scores]
        if not keep:
            return 0.0, d_scores, numpy.zeros_like(trans, dtype="f")
        kept = set(keep)
        kept_others = [i for i in others if i in kept]
        clamped_pairs = numpy.zeros_like(trans64)
        clamped_marginals: Dict[int, numpy.ndarray] = {}
        if kept_others:
            if len(kept_others) < len(others):
                partial = self.forward_backward(
                    [scores[i] for i in kept_others], trans, [gold_allowed[i] for i in kept_others]
                )
            clamped_pairs += partial.pair_counts
            clamped_marginals.update(zip(kept_others, partial.marginals))
        one_hot = numpy.eye(self.n_tags, dtype="f")
        for i in keep:
            path = paths.get(i)
            if path is not None:
                clamped_marginals[i] = one_hot[path]
                numpy.add.at(clamped_pairs, (path[:-1], path[1:]), 1.0)
        free = self.forward_backward([scores[i] for i in keep], trans)
        loss = float(free.log_z.sum() - clamped_z[keep].sum())
        for j, i in enumerate(keep):
            d_scores[i] = free.marginals[j] - clamped_marginals[i]
        return loss, d_scores, (free.pair_counts - clamped_pairs).astype("f")

    def _valid_gold_paths(
        self, gold_allowed: Sequence[numpy.ndarray], trans: numpy.ndarray
    ) -> Dict[int, numpy.ndarray]:
        """Per doc index, the gold tag path of the non-empty docs whose mask
        allows exactly one tag per token along a path the constraints allow."""
        paths = {}
        limit = IMPOSSIBLE / 2
        for i, mask in enumerate(gold_allowed):
            if not len(mask) or not (mask.sum(axis=1) == 1).all():
                continue
            path = mask.argmax(axis=1)
            ends_allowed = self.start[path[0]] > limit and self.end[path[-1]] > limit
            if ends_allowed and (trans[path[:-1], path[1:]] > limit).all():
                paths[i] = path
        return paths

    def spans(self, path: Sequence[int]) -> List[Span3]:
        """Entity spans (start, end exclusive, label) of a valid tag-id path.

        Read off the prefixes with numpy rather than spaCy's `tags_to_entities`,
        which walks tag strings in Python (and, for BIO, `iob_to_biluo` pops
        from the front of a list: quadratic in the doc length).
        """
        path = numpy.asarray(path, dtype="int64")
        if not len(path):
            return []
        starts = numpy.flatnonzero(self._opens[path])
        if self.scheme == "BILUO":
            ends = numpy.flatnonzero(self._closes[path]) + 1
        else:
            next_is_i = numpy.append(self._is_i[path[1:]], False)
            ends = numpy.flatnonzero(self._inside[path] & ~next_is_i) + 1
        return [(int(a), int(b), self._label[path[a]]) for a, b in zip(starts, ends)]

    def span_probabilities(
        self,
        result: LatticeResult,
        doc_index: int,
        scores: numpy.ndarray,
        trans: numpy.ndarray,
        path: Sequence[int],
        spans: Sequence[Span3],
    ) -> List[float]:
        """The probability of each span having exactly the tags `path` gives it.

        For a span [i, j) this sums the lattice over all sequences that agree
        with the path on tokens i..j-1: alpha at i, the fixed path inside, beta
        at j-1. In BIO the span must also end at j: the next token must not take
        the span's I- tag, so that one tag is left out of the sum after it.
        """
        alpha, beta, log_z = result.alpha[doc_index], result.beta[doc_index], result.log_z[doc_index]
        n = len(scores)
        probs = []
        for i, j, label in spans:
            tags = path[i:j]
            log_p = alpha[i, tags[0]]
            for t in range(i + 1, j):
                log_p += trans[tags[t - i - 1], tags[t - i]] + scores[t, tags[t - i]]
            last = tags[-1]
            if self.scheme == "BILUO":
                log_p += beta[j - 1, last]
            elif j == n:
                log_p += self.end[last]
            else:
                nxt = numpy.delete(trans[last] + scores[j] + beta[j], self.index[f"I-{label}"])
                top = nxt.max()
                log_p += top + numpy.log(numpy.exp(nxt - top).sum())
            probs.append(float(min(1.0, numpy.exp(log_p - log_z))))
        return probs


def rows_ending_at(last: Sequence[int]) -> Dict[int, List[int]]:
    """Position -> the rows whose last token is there (for batched recursions that
    start or finish each row at its own length)."""
    ends: Dict[int, List[int]] = {}
    for row, t in enumerate(last):
        ends.setdefault(int(t), []).append(row)
    return ends


# -- Viterbi --------------------------------------------------------------


def viterbi(
    scores: Sequence[numpy.ndarray], trans: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray
) -> List[numpy.ndarray]:
    """The best valid path of each doc: the sum of its token scores and
    transition scores, with IMPOSSIBLE transitions excluded. Docs of similar
    length are decoded together, one numpy step per position."""
    trans, start, end = trans.astype("f"), start.astype("f"), end.astype("f")
    lengths = [len(s) for s in scores]
    results: List[numpy.ndarray] = [numpy.zeros(0, dtype="i") for _ in scores]
    for group in length_groups(lengths):
        if len(group) == 1:
            results[group[0]] = viterbi_one(numpy.asarray(scores[group[0]], dtype="f"), trans, start, end)
        else:
            for i, path in zip(group, _viterbi_group([scores[i] for i in group], trans, start, end)):
                results[i] = path
    return results


def viterbi_one(scores: numpy.ndarray, trans: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray) -> numpy.ndarray:
    """Viterbi for one doc on vectors: the path of the batched loop with fewer
    and smaller numpy calls per token, which is what a single `nlp(text)`
    waits on (BENCHMARKS.md, fast paths)."""
    n, n_tags = scores.shape
    columns = numpy.arange(n_tags)
    backptr = numpy.zeros((n, n_tags), dtype=numpy.intp)
    delta = scores[0] + start
    for t in range(1, n):
        cand = delta[:, None] + trans
        best = cand.argmax(axis=0)
        backptr[t] = best
        delta = cand[best, columns] + scores[t]
    cur = int((delta + end).argmax())
    table = backptr.tolist()
    path = [cur]
    for t in range(n - 1, 0, -1):
        cur = table[t][cur]
        path.append(cur)
    return numpy.array(path[::-1], dtype="i")


def _viterbi_group(
    scores: Sequence[numpy.ndarray], trans: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray
) -> List[numpy.ndarray]:
    """Viterbi over docs padded together, one numpy step per position."""
    n_tags = trans.shape[0]
    glens = numpy.array([len(s) for s in scores])
    max_len = int(glens.max())
    padded = pad(scores, n_tags)
    backptr = numpy.zeros((max_len, len(scores), n_tags), dtype=numpy.int16 if n_tags < 32000 else numpy.int32)
    delta = padded[:, 0] + start
    final = numpy.empty((len(scores), n_tags), dtype="f")
    ends_at = rows_ending_at(glens - 1)
    for t in range(max_len):
        if t > 0:
            cand = delta[:, :, None] + trans[None]
            backptr[t] = cand.argmax(axis=1)
            delta = cand.max(axis=1)
            delta += padded[:, t]
        rows = ends_at.get(t)
        if rows is not None:
            final[rows] = delta[rows]
    best_last = (final + end).argmax(axis=1)
    # Backtrack all docs at once; a doc joins when t reaches its last token
    # (before that its row holds values that are discarded).
    rows_all = numpy.arange(len(scores))
    paths = numpy.zeros((len(scores), max_len), dtype="i")
    cur = numpy.zeros(len(scores), dtype=numpy.int64)
    for t in range(max_len - 1, -1, -1):
        rows = ends_at.get(t)
        if rows is not None:
            cur[rows] = best_last[rows]
        paths[:, t] = cur
        if t > 0:
            cur = backptr[t, rows_all, cur]
    return [paths[row, :n].copy() for row, n in enumerate(glens)]


# -- forward-backward -------------------------------------------------------


def _logsumexp(x: numpy.ndarray, axis: int) -> numpy.ndarray:
    top = x.max(axis=axis, keepdims=True)
    top = numpy.where(numpy.isfinite(top), top, 0.0)  # rows that are all -inf stay -inf, not NaN
    with numpy.errstate(divide="ignore"):
        return (top + numpy.log(numpy.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _path_score(
    scores: numpy.ndarray, path: numpy.ndarray, trans: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray
) -> float:
    """The log score of one tag path: its emissions, transitions, start and end."""
    emitted = scores[numpy.arange(len(path)), path].astype("f8").sum()
    return float(emitted + trans[path[:-1], path[1:]].sum() + start[path[0]] + end[path[-1]])


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
    result = LatticeResult(lengths, n_tags, keep_tables)
    trans64 = trans.astype("f8")
    for group in length_groups(lengths):
        emit = pad([scores[i] for i in group], n_tags, dtype="f8")
        if allowed_tags is not None:
            mask = pad([allowed_tags[i] for i in group], n_tags, fill=True, dtype=bool)
            emit += numpy.where(mask, 0.0, IMPOSSIBLE)
        lens = numpy.array([lengths[i] for i in group])
        if len(group) == 1:
            alpha, beta = _recursions_one(emit[0], trans64, start, end)
            alpha, beta = alpha[None], beta[None]
        else:
            alpha, beta = _recursions(emit, trans64, start, end, lens - 1)
        z = _logsumexp(alpha[numpy.arange(len(group)), lens - 1] + end[None, :], axis=1)
        for row, i in enumerate(group):
            n = lens[row]
            if numpy.isfinite(z[row]):  # else no valid sequence: marginals stay 0
                result.marginals[i] = numpy.exp(alpha[row, :n] + beta[row, :n] - z[row]).astype("f")
            result.log_z[i] = z[row]
            if keep_tables:
                result.alpha[i] = alpha[row, :n]
                result.beta[i] = beta[row, :n]
        if want_pairs:
            _add_pair_counts(result, emit, alpha, beta, z, lens, trans64)
    return result


def _add_pair_counts(result, emit, alpha, beta, z, lens, trans) -> None:
    """Add the expected count of each tag pair (i at t-1, j at t) over all
    positions of the group: exp(alpha[t-1, i] + trans[i, j] + emit[t, j] +
    beta[t, j] - z). The rows of every position are shifted by their maxima
    and exponentiated once, so that the sum over positions is one
    (n_tags x positions) @ (positions x n_tags) product instead of a
    (docs, n_tags, n_tags) block of exponentials per position, which took
    half of the CRF loss's time in a training profile."""
    n_positions = emit.shape[1]
    if n_positions < 2:
        return
    valid = (lens[:, None] > numpy.arange(1, n_positions)[None, :]) & numpy.isfinite(z)[:, None]
    if not valid.any():
        return
    before = alpha[:, :-1][valid]  # (positions, n_tags): alpha at t-1
    after = (emit[:, 1:] + beta[:, 1:])[valid]  # emit + beta at t
    log_z = numpy.broadcast_to(z[:, None], valid.shape)[valid]
    top_before = before.max(axis=1, keepdims=True)
    top_after = after.max(axis=1, keepdims=True)
    with numpy.errstate(under="ignore", over="ignore"):
        left = numpy.exp(before - top_before)
        right = numpy.exp(after - top_after) * numpy.exp(top_before + top_after - log_z[:, None])
        result.pair_counts += numpy.exp(trans) * (left.T @ right)


def _recursions_one(
    emit: numpy.ndarray, trans: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """_recursions for one doc, on vectors: what a single `nlp(text)` waits on.

    The same probability-space recursions, but a position's vector is
    divided by its sum only when that sum leaves [1e-50, 1e50], rather than
    at every position: three numpy calls per position instead of six. Each
    divisor is kept (as a log) where it was applied, so the log tables are
    the same. Values down to 1e-267 of a row's largest stay above float64's
    smallest number, so nothing that matters underflows.
    """
    n = emit.shape[0]
    top = emit.max(axis=1)
    prob = numpy.exp(emit - top[:, None])
    trans_p = numpy.exp(trans)
    fwd = numpy.empty_like(emit)
    bwd = numpy.empty_like(emit)
    f_log = top.copy()  # per position: its row maximum plus the log of any divisor applied there
    b_log = numpy.zeros(n)
    low, high = 1e-50, 1e50
    with numpy.errstate(divide="ignore", invalid="ignore", under="ignore"):
        numpy.multiply(numpy.exp(start), prob[0], out=fwd[0])
        for t in range(n):
            if t > 0:
                numpy.matmul(fwd[t - 1], trans_p, out=fwd[t])
                fwd[t] *= prob[t]
            total = fwd[t].sum()
            if not low < total < high:
                total = max(total, 1e-300)
                fwd[t] /= total
                f_log[t] += numpy.log(total)
        log_alpha = numpy.log(fwd) + numpy.cumsum(f_log)[:, None]
        bwd[n - 1] = numpy.exp(end)
        step = numpy.empty(emit.shape[1])
        for t in range(n - 2, -1, -1):
            numpy.multiply(prob[t + 1], bwd[t + 1], out=step)
            numpy.matmul(trans_p, step, out=bwd[t])
            b_log[t] = top[t + 1]
            total = bwd[t].sum()
            if not low < total < high:
                total = max(total, 1e-300)
                bwd[t] /= total
                b_log[t] += numpy.log(total)
        log_beta = numpy.log(bwd) + numpy.cumsum(b_log[::-1])[::-1][:, None]
    return log_alpha, log_beta


def _recursions(
    emit: numpy.ndarray, trans: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray, last: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Log forward and backward tables of padded docs, computed in probability
    space with per-step rescaling (one small matrix product per position)
    rather than a log-sum-exp per position: the same values in several times
    fewer numpy calls. The loops keep only the scaled vectors and the scales;
    logs and running sums are taken afterwards over whole tables."""
    batch, max_len, n_tags = emit.shape
    trans_p = numpy.exp(trans)  # forbidden transitions become exactly 0
    trans_pT = numpy.ascontiguousarray(trans_p.T)
    top = emit.max(axis=2)
    prob = numpy.exp(emit - top[:, :, None])
    fwd = numpy.empty_like(emit)
    bwd = numpy.empty_like(emit)
    f_scale = numpy.empty((batch, max_len))
    b_scale = numpy.zeros((batch, max_len))
    with numpy.errstate(divide="ignore", invalid="ignore"):
        a = fwd[:, 0]
        numpy.multiply(prob[:, 0], numpy.exp(start)[None, :], out=a)
        for t in range(max_len):
            if t > 0:
                a = fwd[:, t]
                numpy.matmul(fwd[:, t - 1], trans_p, out=a)
                a *= prob[:, t]
            scale = a.sum(axis=1)
            numpy.maximum(scale, 1e-300, out=scale)
            a /= scale[:, None]
            f_scale[:, t] = scale
        # log alpha_t = log(scaled alpha_t) + sum of log scales and row maxima up to t
        log_alpha = numpy.log(fwd)
        log_alpha += numpy.cumsum(numpy.log(f_scale) + top, axis=1)[:, :, None]

        end_p = numpy.exp(end)
        bwd[:, max_len - 1] = end_p
        ends_at = rows_ending_at(last)
        for t in range(max_len - 2, -1, -1):
            b = bwd[:, t]
            numpy.multiply(prob[:, t + 1], bwd[:, t + 1], out=b)
            numpy.matmul(b.copy(), trans_pT, out=b)
            scale = b.sum(axis=1)
            numpy.maximum(scale, 1e-300, out=scale)
            b /= scale[:, None]
            b_scale[:, t] = numpy.log(scale) + top[:, t + 1]
            rows = ends_at.get(t)
            if rows is not None:  # docs whose last token is t start their backward pass here
                b[rows] = end_p
                b_scale[rows, t:] = 0.0
        # log beta_t = log(scaled beta_t) + sum of the log scales from t to the doc's end
        log_beta = numpy.log(bwd)
        log_beta += numpy.cumsum(b_scale[:, ::-1], axis=1)[:, ::-1, None]
    return log_alpha, log_beta
