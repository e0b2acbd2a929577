"""An inference fast path for FeatureEmbed: embedding tables multiplied through
the mixing layer once, so that prediction gathers mixed rows instead of
concatenating ~1,000-wide embeddings and multiplying them for every token.

The mixing layer (Maxout) starts with an affine map W.x + b of the
concatenated embeddings. Each hash embedding's output is a sum of table rows,
and a character embedding's output is one table row per position, so W.x is a
sum of rows of the tables P = E.W_part^T, which we compute once per set of
weights. This is what spaCy's parser does for its hidden layer
("precomputable affine"); thinc's chain/concatenate/Maxout cannot do it, and
profiling showed the concatenation (numpy hstack) and the matrix product
taking over half of nlp.pipe's time. The results equal the layer-by-layer
computation up to float rounding; training always uses the layer-by-layer path.
"""
from typing import Any, Dict, List, Optional, Tuple

import numpy
from spacy.tokens import Doc
from thinc.api import Model
from thinc.model import deserialize_attr, serialize_attr
from thinc.layers.chain import forward as chain_forward
from thinc.layers.chain import init as chain_init
from thinc.types import Floats2d

from .model import output_width

class PlanCache:
    """The mixed tables for the current weights, kept in the layer's attrs.

    It saves as nothing and copies as empty (the tables are rebuilt on first
    use), so models on disk do not grow. It holds the param arrays the plan
    was built from: while it does, no new array can reuse their ids.
    """

    def __init__(self) -> None:
        self.params: List[Any] = []
        self.holders: Optional[List[Tuple[Model, str]]] = None
        self.plan: Optional[Dict[str, Any]] = None
        self.valid = False

    def clear(self) -> None:
        self.params, self.plan, self.valid = [], None, False

    def __deepcopy__(self, memo) -> "PlanCache":
        return PlanCache()


@serialize_attr.register(PlanCache)
def _serialize_cache(_: PlanCache, value: PlanCache, name: str, model: Model) -> bytes:
    return b""


@deserialize_attr.register(PlanCache)
def _deserialize_cache(_: PlanCache, value: bytes, name: str, model: Model) -> PlanCache:
    return PlanCache()


def FusedFeatureEmbed(concat: Model, mix: Model, unwrap: Model, width: int) -> Model[List[Doc], List[Floats2d]]:
    """chain(concat, mix, unwrap), with the fast path in prediction.

    Same layers, params and serialized form as the chain, so pipelines saved
    before the fast path existed load unchanged.
    """
    return Model(
        ">>".join(layer.name for layer in (concat, mix, unwrap)),
        _forward,
        init=chain_init,
        dims={"nO": width},
        layers=[concat, mix, unwrap],
        attrs={"fast_inference": True, "plan_cache": PlanCache()},
    )


def _forward(model: Model, docs: List[Doc], is_train: bool):
    if is_train or not model.attrs.get("fast_inference", True):
        model.attrs["plan_cache"].clear()  # the weights are about to change
        return chain_forward(model, docs, is_train)
    plan = _current_plan(model)
    if plan is None:
        return chain_forward(model, docs, is_train)
    return _fused_predict(model, plan, docs), _no_backprop


def _no_backprop(dY):
    raise ValueError("[rnn_tagger] The FeatureEmbed fast path is for prediction only (is_train=False).")


def _params(model: Model, cache: "PlanCache") -> List[Any]:
    if cache.holders is None:  # the layer structure never changes; walk it once
        cache.holders = [(node, name) for node in model.walk() for name in node.param_names]
    return [node.get_param(name) for node, name in cache.holders if node.has_param(name)]


def _current_plan(model: Model) -> Optional[Dict[str, Any]]:
    cache: PlanCache = model.attrs["plan_cache"]
    params = _params(model, cache)
    if cache.valid and len(cache.params) == len(params) and all(a is b for a, b in zip(cache.params, params)):
        return cache.plan
    cache.params, cache.plan, cache.valid = params, build_plan(model), True
    return cache.plan


def _leaves(model: Model) -> List[Model]:
    return [node for node in model.walk(order="dfs_pre") if not node.layers]  # in concatenation order


def build_plan(model: Model) -> Optional[Dict[str, Any]]:
    """The mixed tables and how to index them; None if the layers are not the
    FeatureEmbed shapes this understands (then prediction uses the plain path)."""
    concat, mix, _ = model.layers
    mix_leaves = _leaves(mix)
    names = [node.name for node in mix_leaves]
    if names.count("maxout") != 1 or not set(names) <= {"maxout", "layernorm", "dropout"}:
        return None
    maxout = mix_leaves[names.index("maxout")]
    layernorm = mix_leaves[names.index("layernorm")] if "layernorm" in names else None
    if layernorm is not None and names.index("layernorm") < names.index("maxout"):
        return None
    ops = model.ops
    nO, nP, nI = maxout.get_dim("nO"), maxout.get_dim("nP"), maxout.get_dim("nI")
    W = ops.reshape2f(maxout.get_param("W"), nO * nP, nI)
    tables: List[Floats2d] = []
    hashed: List[Tuple[Model, List[Tuple[int, int, int, int]]]] = []  # extractor, [(column, seed, nV, row offset)]
    chars: List[Tuple[int, int]] = []  # (n chars, row offset)
    dense: List[Tuple[Model, Floats2d]] = []
    rows = 0
    col = 0
    for part in concat.layers:
        width = output_width(part)
        if width is None:
            return None
        W_part = W[:, col : col + width]
        col += width
        embeds = _hash_part(part)
        char_node = _char_part(part)
        if embeds is not None:
            columns, sub = [], 0
            for node in embeds:
                E = node.get_param("E")
                nV, w = E.shape
                tables.append(ops.gemm(E, ops.as_contig(W_part[:, sub : sub + w]), trans2=True))
                columns.append((int(node.attrs["column"]), int(node.attrs["seed"]), nV, rows))
                rows += nV
                sub += w
            if sub != width:
                return None
            hashed.append((part.layers[0], columns))
        elif char_node is not None:
            E = char_node.get_param("E")  # (nC, 256, nM)
            nC, nV, nM = E.shape
            for c in range(nC):
                tables.append(ops.gemm(ops.as_contig(E[c]), ops.as_contig(W_part[:, c * nM : (c + 1) * nM]), trans2=True))
            chars.append((nC, rows))
            rows += nC * nV
        else:
            dense.append((part, ops.as_contig(W_part)))
    if col != nI:
        return None
    return {
        "table": ops.xp.concatenate(tables) if tables else ops.alloc2f(0, nO * nP),
        "bias": ops.reshape1f(maxout.get_param("b"), nO * nP),
        "hashed": hashed,
        "chars": chars,
        "dense": dense,
        "nO": nO,
        "nP": nP,
        "layernorm": layernorm,
    }


def _hash_part(part: Model) -> Optional[List[Model]]:
    """The HashEmbed nodes of chain(extractor, list2ragged, with_array(concatenate(HashEmbed...)))."""
    if len(part.layers) != 3 or part.layers[1].name != "list2ragged":
        return None
    leaves = _leaves(part.layers[2])
    embeds = [node for node in leaves if node.name == "hashembed"]
    others = {node.name for node in leaves} - {"hashembed", "ints-getitem"}
    if not embeds or others or any(node.attrs.get("column") is None for node in embeds):
        return None
    return embeds


def _char_part(part: Model) -> Optional[Model]:
    """The CharacterEmbed node of chain(CharacterEmbed, list2ragged)."""
    if len(part.layers) == 2 and part.layers[0].name == "charembed" and part.layers[1].name == "list2ragged":
        return part.layers[0]
    return None


def _fused_predict(model: Model, plan: Dict[str, Any], docs: List[Doc]) -> List[Floats2d]:
    ops = model.ops
    xp = ops.xp
    lengths = [len(doc) for doc in docs]
    n = sum(lengths)
    width = plan["nO"]
    if n == 0:
        return [ops.alloc2f(0, width) for _ in docs]
    keys = []
    for extractor, columns in plan["hashed"]:
        ids = ops.xp.concatenate([x for x in extractor.predict(docs) if len(x)])
        for column, seed, nV, offset in columns:
            keys.append(ops.hash(ops.as_contig(ids[:, column], dtype="uint64"), seed) % nV + offset)
    for nC, offset in plan["chars"]:
        utf8 = xp.concatenate([ops.asarray(doc.to_utf8_array(nr_char=nC)) for doc in docs if len(doc)])
        keys.append(utf8.astype("uint32") + (xp.arange(nC, dtype="uint32") * 256 + offset)[None, :])
    pre = ops.gather_add(plan["table"], ops.as_contig(xp.hstack(keys).astype("uint32"))) if keys else ops.alloc2f(n, width * plan["nP"])
    pre += plan["bias"]
    for part, W_part in plan["dense"]:
        X = part.predict(docs)
        X = xp.concatenate([x for x in (getattr(x, "dataXd", x) for x in X) if len(x)]) if isinstance(X, list) else X.dataXd
        pre += ops.gemm(ops.as_contig(X), W_part, trans2=True)
    best, _ = ops.maxout(ops.reshape3f(pre, n, width, plan["nP"]))
    if plan["layernorm"] is not None:
        best = plan["layernorm"].predict(best)
    return ops.unflatten(best, numpy.array(lengths, dtype="i"))
