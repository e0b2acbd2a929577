"""Document memory: each token also sees the mean LSTM state of the other
occurrences of its word in the same document.

A name in a results table ("Freiburg 3 1 0 2") has no context of its own,
but the same name usually appears in running text elsewhere in the story.
Averaging over the other mentions (keyed on the lower-case form, so that
headline capitals match) lets the output layer label them alike: the
neural form of the "non-local features" of Ratinov and Roth (2009).
"""
from typing import Callable, List, Tuple

import numpy
from spacy.tokens import Doc
from thinc.backends import get_array_ops
from thinc.types import Floats2d


def word_groups(doc: Doc) -> numpy.ndarray:
    """Per token, the index of its lower-case word among the doc's distinct words."""
    lowers = doc.to_array("LOWER") if len(doc) else numpy.zeros((0,), dtype="uint64")
    return numpy.unique(lowers, return_inverse=True)[1].reshape(-1).astype("int64")


def mean_of_others(xp, H: Floats2d, groups: numpy.ndarray) -> Tuple[Floats2d, Callable[[Floats2d], Floats2d]]:
    """M[i] = mean of H[j] over the other tokens j of i's group (zero when i is alone).

    Linear in H, so the backward pass is the same averaging applied to dM.
    """
    n_groups = int(groups.max()) + 1 if groups.size else 0
    g = xp.asarray(groups)
    counts = xp.bincount(g, minlength=n_groups) if groups.size else xp.zeros((0,), dtype="int64")
    weight = (1.0 / xp.maximum(counts - 1, 1)).astype(H.dtype)[g][:, None]

    ops = get_array_ops(H)

    def group_sum(X: Floats2d) -> Floats2d:
        sums = xp.zeros((n_groups, X.shape[1]), dtype=X.dtype)
        ops.scatter_add(sums, g, X)  # numpy's add.at; cupyx.scatter_add on GPU
        return sums[g]

    M = weight * (group_sum(H) - H)

    def backprop(dM: Floats2d) -> Floats2d:
        scaled = weight * dM
        return group_sum(scaled) - scaled

    return M, backprop


def with_memory(xp, Ys: List[Floats2d], docs: List[Doc]) -> Tuple[List[Floats2d], Callable]:
    """Concatenate each doc's rows with their document memory: width doubles."""
    results = [mean_of_others(xp, Y, word_groups(doc)) for Y, doc in zip(Ys, docs)]
    out = [xp.hstack([Y, M]) for Y, (M, _) in zip(Ys, results)]

    def backprop(dOut: List[Floats2d]) -> List[Floats2d]:
        dYs = []
        for dO, Y, (_, back) in zip(dOut, Ys, results):
            width = Y.shape[1]
            dYs.append(dO[:, :width] + back(xp.ascontiguousarray(dO[:, width:])))
        return dYs

    return out, backprop
