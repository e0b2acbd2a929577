"""Document memory: each token also sees the mean LSTM state of the other
occurrences of its word in the same document; a window Maxout then lets
what the other mentions of a word say reach the words beside it.

A name in a results table ("Freiburg 3 1 0 2") has no context of its own,
but the same name usually appears in running text elsewhere in the story.
Averaging over the other mentions (keyed on the lower-case form, so that
headline capitals match) lets the output layer label them alike: the
neural form of the "non-local features" of Ratinov and Roth (2009).
"""
from typing import Callable, List, Tuple

import numpy
from spacy.tokens import Doc
from thinc.api import Model, Ops, chain, expand_window, list2ragged, ragged2list, with_array
from thinc.types import Floats2d

from ..util import no_backprop
from .layers import NormalizedMaxout


def word_groups(doc: Doc) -> numpy.ndarray:
    """Per token, the index of its lower-case word among the doc's distinct words."""
    lowers = doc.to_array("LOWER") if len(doc) else numpy.zeros((0,), dtype="uint64")
    return numpy.unique(lowers, return_inverse=True)[1].reshape(-1).astype("int64")


def mean_of_others(ops: Ops, H: Floats2d, groups: numpy.ndarray) -> Tuple[Floats2d, Callable[[Floats2d], Floats2d]]:
    """M[i] = mean of H[j] over the other tokens j of i's group (zero when i is alone).

    Linear in H, so the backward pass is the same averaging applied to dM.
    """
    xp = ops.xp
    n_groups = int(groups.max()) + 1 if groups.size else 0
    g = xp.asarray(groups)
    counts = xp.bincount(g, minlength=n_groups) if groups.size else xp.zeros((0,), dtype="int64")
    weight = (1.0 / xp.maximum(counts - 1, 1)).astype(H.dtype)[g][:, None]

    def group_sum(X: Floats2d) -> Floats2d:
        sums = xp.zeros((n_groups, X.shape[1]), dtype=X.dtype)
        ops.scatter_add(sums, g, X)
        return sums[g]

    M = weight * (group_sum(H) - H)

    def backprop(dM: Floats2d) -> Floats2d:
        scaled = weight * dM
        return group_sum(scaled) - scaled

    return M, backprop


def with_memory(ops: Ops, Ys: List[Floats2d], docs: List[Doc]) -> Tuple[List[Floats2d], Callable]:
    """Concatenate each doc's rows with their document memory: width doubles."""
    xp = ops.xp
    results = [mean_of_others(ops, Y, word_groups(doc)) for Y, doc in zip(Ys, docs)]
    out = [xp.hstack([Y, M]) for Y, (M, _) in zip(Ys, results)]

    def backprop(dOut: List[Floats2d]) -> List[Floats2d]:
        dYs = []
        for dO, Y, (_, back) in zip(dOut, Ys, results):
            width = Y.shape[1]
            dYs.append(dO[:, :width] + back(xp.ascontiguousarray(dO[:, width:])))
        return dYs

    return out, backprop


def WindowMaxout(width: int, out_width: int, window: int, dropout: float) -> Model[List[Floats2d], List[Floats2d]]:
    """A Maxout over each row and its `window` neighbours on either side,
    within each sequence (a one-layer convolution): a single matrix product,
    where a second LSTM costs a recurrence step per token, which is what
    single-sentence latency is made of."""
    mix, maxout, layernorm = NormalizedMaxout(out_width, width * (2 * window + 1), 2, dropout)
    inner = chain(list2ragged(), expand_window(window), with_array(mix), ragged2list())
    model: Model[List[Floats2d], List[Floats2d]] = Model(
        "window_maxout",
        _window_forward,
        init=lambda model, X=None, Y=None: model.layers[0].initialize(),
        layers=[inner],
        dims={"nI": width, "nO": out_width},
        # No padding: the prediction path takes all sequences in one call.
        attrs={"window": window, "pads_to_longest": False},
    )
    model.set_ref("maxout", maxout)
    model.set_ref("layernorm", layernorm)
    return model


def _window_forward(model: Model, Xs: List[Floats2d], is_train: bool):
    if not any(len(X) for X in Xs):  # thinc's seq2col gives no columns for no rows
        width = model.get_dim("nI")
        return [model.ops.alloc2f(0, model.get_dim("nO")) for _ in Xs], lambda dYs: [
            model.ops.alloc2f(0, width) for _ in dYs
        ]
    if is_train:
        return model.layers[0](Xs, is_train)
    lengths = [len(X) for X in Xs]
    Y = window_rows(model, Xs[0] if len(Xs) == 1 else model.ops.xp.concatenate(Xs), lengths)
    return ([Y] if len(Xs) == 1 else model.ops.unflatten(Y, model.ops.asarray1i(lengths))), no_backprop


def window_rows(model: Model, X: Floats2d, lengths: List[int]) -> Floats2d:
    """WindowMaxout's prediction for the rows X of consecutive sequences of
    these lengths (no window crosses from one into the next): the same maxout
    and layer norm as the training layers, called directly, without the list
    and ragged conversions around them.

    Beyond a few hundred rows, the (2 * window + 1)-times-wider column matrix
    that thinc's expand_window builds costs more in memory traffic than the
    matrix product itself: there each offset's
    product is taken on the rows as they are and shifted into place.
    """
    ops = model.ops
    if not len(X):
        return ops.alloc2f(0, model.get_dim("nO"))
    maxout = model.get_ref("maxout")
    window = model.attrs["window"]
    X = ops.as_contig(X)
    if len(X) <= WINDOW_COLUMNS_MAX_ROWS:
        columns = ops.seq2col(X, window, lengths=ops.asarray1i(lengths))
        return model.get_ref("layernorm").predict(maxout.predict(columns))
    nO, nP, width = maxout.get_dim("nO"), maxout.get_dim("nP"), model.get_dim("nI")
    n_out, xp = nO * nP, ops.xp
    W = ops.reshape3f(maxout.get_param("W"), n_out, 2 * window + 1, width)
    # One product for all offsets: (rows, width) x (width, offsets * n_out).
    P = ops.gemm(X, xp.ascontiguousarray(W.transpose(1, 0, 2).reshape(-1, width)), trans2=True)
    Y = P[:, window * n_out : (window + 1) * n_out] + ops.reshape1f(maxout.get_param("b"), n_out)
    segment = xp.repeat(xp.arange(len(lengths)), xp.asarray(lengths))
    for offset in range(1, window + 1):
        same = (segment[offset:] == segment[:-offset])[:, None]  # rows t and t + offset
        before = P[:, (window - offset) * n_out : (window - offset + 1) * n_out]
        Y[offset:] += before[:-offset] * same
        after = P[:, (window + offset) * n_out : (window + offset + 1) * n_out]
        Y[:-offset] += after[offset:] * same
    best, _ = ops.maxout(ops.reshape3f(xp.ascontiguousarray(Y), len(X), nO, nP))
    return model.get_ref("layernorm").predict(best)


# Up to this many rows, WindowMaxout predicts through the column matrix (one product).
WINDOW_COLUMNS_MAX_ROWS = 256
