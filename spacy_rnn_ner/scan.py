"""Prefix products in log depth, for the forward-backward of a single short doc.

Forward-backward steps through a doc one position at a time: for a 20-token
sentence that is some 200 tiny numpy calls, the largest part of the decoding
time of a single `nlp(text)`. The same tables are prefix products of the
per-position transition matrices, and a scan computes all of them in
ceil(log2 n) whole-array steps. (The same trick for Viterbi, in the max-plus
semiring, measured 4x slower than the step-by-step loop: numpy's broadcast
max over n x K x K x K is slow, so Viterbi keeps its loop.)
"""
from typing import Callable, Optional, Tuple

import numpy

# Up to this length, a single doc's lattice is summed with prefix products
# (log-depth) rather than position by position; see _scan_recursions.
SCAN_MAX_LEN = 128


def prefix_products(
    M: numpy.ndarray,
    combine: Callable[[numpy.ndarray, numpy.ndarray], numpy.ndarray],
    normalize: Optional[Callable[[numpy.ndarray], numpy.ndarray]] = None,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Inclusive scan M[0], M[0]*M[1], ... under an associative `combine`,
    in ceil(log2 n) whole-array steps (Hillis-Steele) instead of n small ones.

    With `normalize` (matrix -> per-matrix scale), each step divides the new
    products by their scale and the log scales are returned alongside, so
    that long products neither overflow nor underflow.
    """
    P = M.copy()
    logs = numpy.zeros(len(M))
    k = 1
    while k < len(P):
        joined = combine(P[:-k], P[k:])
        if normalize is not None:
            scale = numpy.maximum(normalize(joined), 1e-300)
            joined /= scale[:, None, None]
            logs[k:] = logs[:-k] + logs[k:] + numpy.log(scale)
        P[k:] = joined
        k *= 2
    return P, logs
