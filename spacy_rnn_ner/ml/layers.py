"""Small thinc layers shared by the feature embedding and the memory window."""
from typing import List, Optional, Tuple

from spacy.tokens import Doc
from thinc.api import Dropout, LayerNorm, Maxout, Model, chain, uniform_init
from thinc.layers.array_getitem import ints_getitem
from thinc.layers.hashembed import init as hash_embed_init
from thinc.types import Floats2d, Ints1d
from thinc.util import partial


def NormalizedMaxout(nO: int, nI: int, nP: int, dropout: float) -> Tuple[Model, Model, Model]:
    """thinc's Maxout(nO, nI, nP, normalize=True, dropout=dropout), built with
    the same nodes (so saved weights load), plus its maxout and layer-norm
    nodes, which the prediction fast paths call directly."""
    maxout = Maxout(nO, nI, nP=nP)
    layernorm = LayerNorm(nI=nO)
    return chain(chain(maxout, layernorm), Dropout(dropout)), maxout, layernorm


def CharacterEmbed(nM: int, nC: int) -> Model[List[Doc], List[Floats2d]]:
    """spaCy's character embedding layer: one nM-wide row for each of the
    first and last nC // 2 characters of a word (nC * nM per token).

    spaCy registers it only inside its `spacy.CharacterEmbed.v2` tok2vec
    (which adds its own hash embedding and mixing layer); the bare layer is
    importable only from a private module, so this is the one place that
    imports it (tests/ml/test_layers.py fails clearly if it moves).
    """
    from spacy.ml._character_embed import CharacterEmbed as SpacyCharacterEmbed

    return SpacyCharacterEmbed(nM=nM, nC=nC)


def HashEmbed(nO: int, nV: int, *, seed: int, column: int, dropout: float) -> Model[Ints1d, Floats2d]:
    """thinc's HashEmbed(nO, nV, seed=, column=, dropout=), with the same nodes,
    names, initializer and outputs (so saved weights load), whose backward
    pass adds into the table's gradient in place.

    thinc's backward allocates a zeroed array of the whole table, adds the
    rows into it and then adds it to the gradient: two passes over every
    table on every update. Our default tables hold 7.3M numbers, most rows
    untouched by a batch, and those passes were about 7% of a training step.
    The gradient is zero after each optimizer step, so adding the rows
    straight into it gives the same numbers.
    """
    table: Model = Model(
        "hashembed",
        _hash_embed_forward,
        init=partial(hash_embed_init, uniform_init),
        params={"E": None},
        dims={"nO": nO, "nV": nV, "nI": None},
        attrs={"column": column, "seed": seed, "dropout_rate": dropout},
    )
    model: Model = chain(ints_getitem((slice(0, None), column)), table)
    model.attrs["column"] = column
    return model


def _hash_embed_forward(model: Model, ids: Ints1d, is_train: bool):
    vectors = model.get_param("E")
    n_rows, width = vectors.shape
    if len(ids) == 0:
        return model.ops.alloc2f(0, width, dtype=vectors.dtype), lambda d_vectors: model.ops.alloc1i(0)
    ids = model.ops.as_contig(ids, dtype="uint64")
    keys = model.ops.hash(ids, model.attrs["seed"]) % n_rows
    output = model.ops.gather_add(vectors, keys)
    drop_mask: Optional[Floats2d] = None
    if is_train:
        drop_mask = model.ops.get_dropout_mask((width,), model.attrs.get("dropout_rate"))
        if drop_mask is not None:
            output *= drop_mask

    def backprop(d_vectors: Floats2d) -> Ints1d:
        if drop_mask is not None:
            d_vectors *= drop_mask
        keys_by_hash = model.ops.as_contig(keys.T, dtype="i")
        if model.has_grad("E"):
            d_table = model.get_grad("E")
        else:
            d_table = model.ops.alloc2f(n_rows, width)
            model.set_grad("E", d_table)
        for row_keys in keys_by_hash:
            model.ops.scatter_add(d_table, row_keys, d_vectors)
        return model.ops.alloc1i(len(ids))

    return output, backprop
