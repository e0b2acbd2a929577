"""The feature embedding's layer, with a prediction fast path: embedding
tables multiplied through the mixing layer once, so that prediction gathers
mixed rows instead of concatenating ~1,000-wide embeddings and multiplying
them for every token.

The mixing layer (Maxout) starts with an affine map W.x + b of the
concatenated embeddings. Each hash embedding's output is a sum of table rows,
and a character embedding's output is one table row per position, so W.x is a
sum of rows of the tables P = E.W_part^T, computed once per set of weights.
spaCy's parser does the same for its hidden layer ("precomputable affine");
thinc's chain/concatenate/Maxout cannot. The results equal the layer-by-layer
computation up to float rounding; training always goes layer by layer.
"""
import threading
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d

from ..util import no_backprop

# What each part of the concatenation is, for the fast path:
#   ["hashed", extractor ref, [HashEmbed refs]]: hashed features (a sum of table rows each)
#   ["chars", CharacterEmbed ref]: one table row per character position
#   ["dense", part ref, width]: anything else (char CNN, static vectors), multiplied as usual
Layout = List[list]


class PlanCache:
    """The mixed tables for the current weights.

    Valid while the param arrays are the same objects and the mixing layer's
    bias is unchanged. The second check catches in-place optimizer updates:
    every update that changes an embedding table passes its gradient through
    the mixing layer, whose bias (a few hundred numbers, cheap to compare on
    every call) changes with it. A lock makes the lazy build safe when two
    threads predict at once. Copies start empty.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # The (node, param name) pairs of the layer, walked once per model:
        # walking the tree on every call cost about 5% of a single-sentence
        # nlp(text). Keyed by the model's id, because Model.copy() shares the
        # forward function, and with it this cache, between the two copies.
        self.slots: Optional[List[Tuple[Model, str]]] = None
        self.slots_of: Optional[int] = None
        self.params: List[Any] = []
        self.mix_bias: Any = None
        self.plan: Optional[Dict[str, Any]] = None

    def __deepcopy__(self, memo) -> "PlanCache":
        return PlanCache()

    def __reduce__(self):
        return (PlanCache, ())


def FeatureEmbedLayer(
    concat: Model, mix: Model, unwrap: Model, width: int, layout: Layout, refs: Dict[str, Model]
) -> Model[List[Doc], List[Floats2d]]:
    """chain(concat, mix, unwrap), with the fast path in prediction.

    The node layout is the chain's, so the weights of pipelines saved before
    the fast path existed load unchanged. refs: the nodes named in `layout`,
    plus "maxout" and "layernorm" of the mixing layer.
    """
    model: Model[List[Doc], List[Floats2d]] = Model(
        ">>".join(layer.name for layer in (concat, mix, unwrap)),
        partial(_forward, cache=PlanCache()),
        init=_init,
        dims={"nO": width},
        layers=[concat, mix, unwrap],
        attrs={"layout": layout},
    )
    for name, node in refs.items():
        model.set_ref(name, node)
    return model


def _init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    for layer in model.layers:
        layer.initialize(X=X)
        X = layer.predict(X) if X is not None else None


def plain_forward(model: Model, docs: List[Doc], is_train: bool):
    """The layer-by-layer computation (training, and the reference for the fast path)."""
    X, callbacks = docs, []
    for layer in model.layers:
        X, callback = layer(X, is_train)
        callbacks.append(callback)

    def backprop(dY):
        for callback in reversed(callbacks):
            dY = callback(dY)
        return dY

    return X, backprop


def _forward(model: Model, docs: List[Doc], is_train: bool, cache: PlanCache):
    if is_train:
        return plain_forward(model, docs, is_train)
    plan = _current_plan(model, cache)
    return fused_predict(model, plan, docs), no_backprop


def _params(model: Model, cache: PlanCache) -> List[Any]:
    slots = cache.slots
    if slots is None or cache.slots_of != model.id:
        slots = [(node, name) for node in model.walk() for name in node.param_names]
        cache.slots, cache.slots_of = slots, model.id
    return [node.get_param(name) if node.has_param(name) else None for node, name in slots]


def _current_plan(model: Model, cache: PlanCache) -> Dict[str, Any]:
    params = _params(model, cache)
    mix_bias = model.get_ref("maxout").get_param("b")
    with cache.lock:
        same = len(cache.params) == len(params) and all(a is b for a, b in zip(cache.params, params))
        if cache.plan is None or not same or not model.ops.xp.array_equal(cache.mix_bias, mix_bias):
            cache.plan = build_plan(model)
            cache.params, cache.mix_bias = params, mix_bias.copy()
        return cache.plan


def build_plan(model: Model) -> Dict[str, Any]:
    """The mixed tables and how to index them."""
    ops = model.ops
    maxout = model.get_ref("maxout")
    nO, nP, nI = maxout.get_dim("nO"), maxout.get_dim("nP"), maxout.get_dim("nI")
    W = ops.reshape2f(maxout.get_param("W"), nO * nP, nI)
    tables: List[Floats2d] = []
    hashed: List[Tuple[Model, List[Tuple[int, int, int, int]]]] = []  # extractor, [(column, seed, nV, row offset)]
    chars: List[Tuple[int, int]] = []  # (n chars, row offset)
    dense: List[Tuple[Model, Floats2d]] = []
    rows = col = 0
    for kind, *names in model.attrs["layout"]:
        if kind == "hashed":
            extract_name, table_names = names
            columns = []
            for name in table_names:
                node = model.get_ref(name)
                E = node.get_param("E")
                nV, w = E.shape
                tables.append(ops.gemm(E, ops.as_contig(W[:, col : col + w]), trans2=True))
                columns.append((int(node.attrs["column"]), int(node.attrs["seed"]), nV, rows))
                rows += nV
                col += w
            hashed.append((model.get_ref(extract_name), columns))
        elif kind == "chars":
            E = model.get_ref(names[0]).get_param("E")  # (nC, 256, nM)
            nC, nV, nM = E.shape
            for c in range(nC):
                tables.append(ops.gemm(ops.as_contig(E[c]), ops.as_contig(W[:, col : col + nM]), trans2=True))
                col += nM
            chars.append((nC, rows))
            rows += nC * nV
        else:
            part, width = model.get_ref(names[0]), names[1]
            dense.append((part, ops.as_contig(W[:, col : col + width])))
            col += width
    if col != nI:
        raise ValueError(f"[rnn_tagger] FeatureEmbed layout covers {col} of the mixing layer's {nI} inputs.")
    return {
        "table": ops.xp.concatenate(tables) if tables else ops.alloc2f(0, nO * nP),
        "bias": ops.reshape1f(maxout.get_param("b"), nO * nP),
        "hashed": hashed,
        "chars": chars,
        "dense": dense,
        "nO": nO,
        "nP": nP,
        "layernorm": model.get_ref("layernorm"),
    }


def fused_predict(model: Model, plan: Dict[str, Any], docs: Sequence[Doc]) -> List[Floats2d]:
    """The layer's output for `docs` through the mixed tables."""
    ops = model.ops
    xp = ops.xp
    lengths = [len(doc) for doc in docs]
    n = sum(lengths)
    width = plan["nO"]
    if n == 0:
        return [ops.alloc2f(0, width) for _ in docs]
    keys = []
    for extractor, columns in plan["hashed"]:
        ids = xp.concatenate([x for x in extractor.predict(docs) if len(x)])
        for column, seed, nV, offset in columns:
            keys.append(ops.hash(ops.as_contig(ids[:, column], dtype="uint64"), seed) % nV + offset)
    for nC, offset in plan["chars"]:
        utf8 = ops.asarray(utf8_rows(docs, nC))
        keys.append(utf8.astype("uint32") + (xp.arange(nC, dtype="uint32") * 256 + offset)[None, :])
    if keys:
        pre = ops.gather_add(plan["table"], ops.as_contig(xp.hstack(keys).astype("uint32")))
    else:
        pre = ops.alloc2f(n, width * plan["nP"])
    pre += plan["bias"]
    for part, W_part in plan["dense"]:
        X = part.predict(docs)
        X = xp.concatenate([x for x in (getattr(x, "dataXd", x) for x in X) if len(x)]) if isinstance(X, list) else X.dataXd
        pre += ops.gemm(ops.as_contig(X), W_part, trans2=True)
    best, _ = ops.maxout(ops.reshape3f(pre, n, width, plan["nP"]))
    best = plan["layernorm"].predict(best)
    return ops.unflatten(best, numpy.array(lengths, dtype="i"))


# Per word (orth hash) and width, the bytes of its `utf8_rows` row. Bounded:
# emptied when it reaches this many entries.
_UTF8_ROWS: Dict[Tuple[int, int], bytes] = {}
_UTF8_ROWS_MAX = 500_000


def utf8_rows(docs: Sequence[Doc], n_chars: int) -> numpy.ndarray:
    """The rows of `doc.to_utf8_array(nr_char=n_chars)` for all tokens of
    `docs`, one after another: each word's first, last, second, second-to-last
    ... UTF-8 bytes, padded with 255.

    spaCy's method builds a Token object and a byte string for every token,
    a tenth of our prediction time on CoNLL-2003 test; here each distinct
    word of the batch is looked up once, in a cache that outlives the call.
    """
    orths = [doc.to_array("ORTH").reshape(-1) for doc in docs if len(doc)]
    if not orths:
        return numpy.zeros((0, n_chars), dtype="uint8")
    words, inverse = numpy.unique(numpy.concatenate(orths), return_inverse=True)
    strings = docs[0].vocab.strings
    if len(_UTF8_ROWS) > _UTF8_ROWS_MAX:
        _UTF8_ROWS.clear()
    rows = []
    for orth in words.tolist():
        row = _UTF8_ROWS.get((orth, n_chars))
        if row is None:
            row = _UTF8_ROWS[(orth, n_chars)] = _utf8_row(strings[orth], n_chars)
        rows.append(row)
    table = numpy.frombuffer(b"".join(rows), dtype="uint8").reshape(len(words), n_chars)
    return table[inverse.reshape(-1)]


def _utf8_row(text: str, n_chars: int) -> bytes:
    encoded = text.encode("utf8")
    order = [i for pair in zip(range(len(encoded)), range(len(encoded) - 1, -1, -1)) for i in pair]
    # Alternate from the front and the back until the two ends meet.
    picked = bytes(encoded[i] for i in order[: len(encoded)])
    return picked[:n_chars].ljust(n_chars, b"\xff")
