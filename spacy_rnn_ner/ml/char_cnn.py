"""A character CNN word representation (Ma and Hovy 2016; Chiu and Nichols 2016):
embed each character of a word, convolve a window over them, and keep each
filter's maximum over the word. Unlike spaCy's CharacterEmbed, which gives
each of the first and last few character positions its own embedding, the
filters respond to a character n-gram wherever it occurs in the word.

Written in thinc (numpy/cupy ops) rather than torch so that it stays one
cheap layer inside FeatureEmbed and its fast inference path.
"""
from typing import List, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from thinc.api import Model
from thinc.initializers import glorot_uniform_init, uniform_init
from thinc.types import Floats2d


def CharCNN(
    n_filters: int = 50, char_width: int = 25, window: int = 3, max_chars: int = 20, n_rows: int = 512
) -> Model[List[Doc], List[Floats2d]]:
    """One row of `n_filters` per token: max over the word of a convolution of
    width `window` over its (first `max_chars`) character embeddings.
    Characters are hashed into `n_rows` rows by code point (row 0 is padding).
    """
    return Model(
        "char_cnn",
        _forward,
        init=_init,
        dims={"nO": n_filters, "nM": char_width, "nW": window, "nL": max_chars, "nV": n_rows},
        params={"E": None, "W": None, "b": None},
    )


def _init(model: Model, X=None, Y=None) -> None:
    nO, nM, nW, nV = (model.get_dim(d) for d in ("nO", "nM", "nW", "nV"))
    E = uniform_init(model.ops, (nV, nM))
    E[0] = 0.0
    model.set_param("E", E)
    model.set_param("W", glorot_uniform_init(model.ops, (nO, nW * nM)))
    model.set_param("b", model.ops.alloc1f(nO))


def char_ids(docs: List[Doc], max_chars: int, n_rows: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(n_tokens, max_chars) character rows (0 = padding) and each word's length, for all docs."""
    ids, lengths = [], []
    for doc in docs:
        if not len(doc):
            continue
        codes = numpy.frombuffer(doc.text.encode("utf-32-le"), dtype="uint32")
        spans = doc.to_array([IDX, LENGTH]).astype("int64")
        n_chars = numpy.minimum(spans[:, 1], max_chars)
        pos = spans[:, :1] + numpy.arange(max_chars)[None, :]
        inside = numpy.arange(max_chars)[None, :] < n_chars[:, None]
        rows = codes[numpy.minimum(pos, len(codes) - 1)] % (n_rows - 1) + 1
        ids.append(numpy.where(inside, rows, 0))
        lengths.append(n_chars)
    if not ids:
        return numpy.zeros((0, max_chars), dtype="int64"), numpy.zeros((0,), dtype="int64")
    return numpy.concatenate(ids).astype("int64"), numpy.concatenate(lengths)


def _forward(model: Model, docs: List[Doc], is_train: bool):
    ops, xp = model.ops, model.ops.xp
    E, W, b = model.get_param("E"), model.get_param("W"), model.get_param("b")
    nO, nM, nW, nL, nV = (model.get_dim(d) for d in ("nO", "nM", "nW", "nL", "nV"))
    ids_np, lengths_np = char_ids(docs, nL, nV)
    ids, lengths = ops.asarray(ids_np), ops.asarray(lengths_np)
    N = ids.shape[0]
    half = nW // 2
    # Characters with `half` padding positions on each side, then each window as one row.
    padded = ops.alloc3f(N, nL + 2 * half, nM)
    padded[:, half : half + nL] = E[ids]
    cols = xp.concatenate([padded[:, k : k + nL] for k in range(nW)], axis=2)  # (N, nL, nW*nM)
    conv = ops.gemm(cols.reshape(N * nL, nW * nM), W, trans2=True).reshape(N, nL, nO) + b
    # Positions past the word's end (at least one position per word) do not compete for the max.
    valid = xp.arange(nL)[None, :] < xp.maximum(lengths, 1)[:, None]
    conv = xp.where(valid[:, :, None], conv, -1e9)
    which = conv.argmax(axis=1)  # (N, nO)
    rows, filters = xp.arange(N)[:, None], xp.arange(nO)[None, :]  # plain indexing works on numpy and cupy
    pooled = conv[rows, which, filters]
    out = ops.unflatten(pooled, numpy.array([len(doc) for doc in docs], dtype="i"))

    def backprop(d_out: List[Floats2d]) -> List:
        d_pooled = xp.concatenate([d for d in d_out if len(d)]) if N else ops.alloc2f(0, nO)
        d_conv = ops.alloc3f(N, nL, nO)
        d_conv[rows, which, filters] = d_pooled
        d_conv2 = d_conv.reshape(N * nL, nO)
        model.inc_grad("b", d_pooled.sum(axis=0))
        model.inc_grad("W", ops.gemm(d_conv2, cols.reshape(N * nL, nW * nM), trans1=True))
        d_cols = ops.gemm(d_conv2, W).reshape(N, nL, nW, nM)
        d_padded = ops.alloc3f(N, nL + 2 * half, nM)
        for k in range(nW):
            d_padded[:, k : k + nL] += d_cols[:, :, k]
        d_chars = d_padded[:, half : half + nL].reshape(N * nL, nM)
        dE = ops.alloc2f(nV, nM)
        ops.scatter_add(dE, ids.reshape(-1).astype("int32"), d_chars)
        dE[0] = 0.0  # padding stays zero
        model.inc_grad("E", dE)
        return []

    return out, backprop

