"""Word features for NER: hashed lexical attributes, Brown-cluster path
prefixes and character embeddings, concatenated and mixed by a Maxout layer."""
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy
from spacy.attrs import IS_UPPER, LENGTH
from spacy.ml._character_embed import CharacterEmbed
from spacy.ml.featureextractor import FeatureExtractor
from spacy.ml.staticvectors import StaticVectors
from spacy.strings import get_string_id
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import HashEmbed, Maxout, Model, chain, concatenate, list2ragged, ragged2list, with_array
from thinc.types import Floats2d, Ints2d

from .fused_embed import FusedFeatureEmbed

CLUSTER_TABLE = "lexeme_cluster"


def _load_cluster_table(lang: str) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Sorted word hashes and their Brown clusters from spacy-lookups-data, or empty arrays."""
    try:
        from spacy.lookups import load_lookups

        table = load_lookups(lang, [CLUSTER_TABLE], strict=True).get_table(CLUSTER_TABLE)
    except (ImportError, ValueError, KeyError) as err:
        warnings.warn(
            f"[rnn_tagger] No Brown clusters for language '{lang}' ({type(err).__name__}: {err}). "
            "The cluster features are switched off for this model. Install "
            "spacy-lookups-data, or set use_clusters = false in the embed config to "
            "silence this warning."
        )
        return numpy.zeros((0,), dtype="uint64"), numpy.zeros((0,), dtype="uint32")
    keys = numpy.fromiter(table.keys(), dtype="uint64", count=len(table))
    values = numpy.fromiter(table.values(), dtype="uint32", count=len(table))
    order = numpy.argsort(keys)
    return keys[order], values[order]


def BrownClusterFeatures(prefix_lengths: Sequence[int], case_fallback: bool = False) -> Model[List[Doc], List[Ints2d]]:
    """One column per prefix length k: the first k bits of the word's Brown path.

    With case_fallback, an all-caps word ("JAPAN", common in news headlines)
    takes the cluster of its title-case form where the table has one (the
    clusters put most all-caps words in one generic cluster), and a word
    missing from the table tries its title-case, then lower-case form.

    The table is loaded from spacy-lookups-data at initialization and kept in
    the layer's attrs, which thinc serializes with the model: a trained
    pipeline never needs the lookups package at run time. spaCy stores each
    path bit-reversed, so the prefix of length k is the low k bits.
    """
    return Model(
        "brown_clusters",
        _cluster_forward,
        init=_cluster_init,
        attrs={
            "prefix_lengths": list(prefix_lengths),
            "case_fallback": case_fallback,
            "keys": numpy.zeros((0,), dtype="uint64"),
            "values": numpy.zeros((0,), dtype="uint32"),
        },
    )


def _cluster_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    if X:
        keys, values = _load_cluster_table(X[0].lang_)
        model.attrs["keys"] = keys
        model.attrs["values"] = values


def lookup_clusters(keys: numpy.ndarray, values: numpy.ndarray, orths: numpy.ndarray) -> numpy.ndarray:
    """Cluster ids for word hashes (0 where the word has none), by binary search."""
    if len(keys) == 0:
        return numpy.zeros(orths.shape, dtype="uint32")
    pos = numpy.searchsorted(keys, orths)
    pos = numpy.minimum(pos, len(keys) - 1)
    return numpy.where(keys[pos] == orths, values[pos], 0).astype("uint32")


def _case_fallback(doc: Doc, clusters: numpy.ndarray, keys: numpy.ndarray, values: numpy.ndarray) -> numpy.ndarray:
    """Clusters of title- or lower-case forms for all-caps words and words the table lacks."""
    flags = doc.to_array([IS_UPPER, LENGTH])
    todo = numpy.flatnonzero((clusters == 0) | ((flags[:, 0] == 1) & (flags[:, 1] > 1))).tolist()
    if not todo:
        return clusters
    clusters = clusters.copy()
    texts = {i: doc[i].text for i in todo}
    for variant in (str.title, str.lower):
        forms = numpy.array([get_string_id(variant(texts[i])) for i in todo], dtype="uint64")
        found = lookup_clusters(keys, values, forms)
        keep = []
        for i, c in zip(todo, found):
            if c:
                clusters[i] = c
            else:
                keep.append(i)
        todo = keep
        if not todo:
            break
    return clusters


def _cluster_forward(model: Model, docs: List[Doc], is_train: bool):
    keys, values = model.attrs["keys"], model.attrs["values"]
    masks = numpy.array([(1 << k) - 1 for k in model.attrs["prefix_lengths"]], dtype="uint64")
    output = []
    for doc in docs:
        orths = doc.to_array("ORTH").astype("uint64") if len(doc) else numpy.zeros((0,), dtype="uint64")
        clusters = lookup_clusters(keys, values, orths).astype("uint64")
        if model.attrs.get("case_fallback") and len(keys):
            clusters = _case_fallback(doc, clusters, keys, values)
        feats = clusters[:, None] & masks[None, :]
        output.append(model.ops.asarray2i(feats.astype("uint64"), dtype="uint64"))
    return output, lambda d_output: []


def TokenDropout(rate: float) -> Model[Floats2d, Floats2d]:
    """Zero a whole row (one token's vector) with probability `rate` in training.

    Applied to the word-identity embedding, this is the classic "word
    dropout" / UNK replacement of BiLSTM taggers: the model learns to tag a
    word from its shape, affixes, clusters and characters when it cannot rely
    on having seen the word, which is the case for most test-set entities.
    The attr is not called dropout_rate, so spaCy's [training] dropout
    leaves it alone. No rescaling: a dropped row stands for "unknown word".
    """
    return Model("token_dropout", _token_dropout_forward, attrs={"token_dropout": rate})


def _token_dropout_forward(model: Model, X: Floats2d, is_train: bool):
    rate = model.attrs["token_dropout"]
    if not is_train or rate <= 0 or len(X) == 0:
        return X, lambda dY: dY
    keep = (model.ops.xp.random.uniform(size=(X.shape[0], 1)) >= rate).astype(X.dtype)
    return X * keep, lambda dY: dY * keep


@registry.architectures("spacy_rnn_ner.FeatureEmbed.v1")
def build_feature_embed(
    width: int,
    attrs: List[str],
    rows: List[int],
    use_clusters: bool = True,
    cluster_prefixes: List[int] = [4, 6, 10, 20],
    cluster_rows: int = 5000,
    char_width: int = 16,
    n_chars: int = 8,
    include_static_vectors: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """Embed each token from hashed attributes, Brown clusters and its characters.

    width: the output width (and the width of each hash embedding table).
    attrs, rows: lexical attributes to hash (e.g. NORM, PREFIX, SUFFIX, SHAPE)
        and the number of rows of each table, as in spacy.MultiHashEmbed.v2.
    use_clusters: add Brown-cluster path prefixes of `cluster_prefixes` bits
        (English and a few other languages; off with a warning where
        spacy-lookups-data has no table).
    char_width, n_chars: spaCy's CharacterEmbed over the first and last
        characters of each word (`char_width` dimensions per character);
        char_width = 0 switches the characters off.
    include_static_vectors: also project the vocab's static word vectors
        (set [initialize] vectors) to `width` and concatenate them.
    """
    return _feature_embed(
        width, attrs, rows, use_clusters, cluster_prefixes, cluster_rows, char_width, n_chars,
        include_static_vectors, word_dropout=0.0, cluster_case_fallback=False,
    )


@registry.architectures("spacy_rnn_ner.FeatureEmbed.v2")
def build_feature_embed_v2(
    width: int,
    attrs: List[str],
    rows: List[int],
    use_clusters: bool = True,
    cluster_prefixes: List[int] = [4, 6, 10, 20],
    cluster_rows: int = 5000,
    char_width: int = 16,
    n_chars: int = 8,
    include_static_vectors: bool = False,
    word_dropout: float = 0.1,
    cluster_case_fallback: bool = True,
) -> Model[List[Doc], List[Floats2d]]:
    """FeatureEmbed.v1 plus two options for unseen and upper-case words.

    word_dropout: in training, drop the first attr's vector (the word itself,
        e.g. NORM) for this share of tokens, so that the other features learn
        to carry unseen words (see TokenDropout).
    cluster_case_fallback: all-caps words and words without a cluster take
        the cluster of their title- or lower-case form (see BrownClusterFeatures).
    Other arguments as FeatureEmbed.v1.
    """
    return _feature_embed(
        width, attrs, rows, use_clusters, cluster_prefixes, cluster_rows, char_width, n_chars,
        include_static_vectors, word_dropout=word_dropout, cluster_case_fallback=cluster_case_fallback,
    )


def _feature_embed(
    width: int,
    attrs: List[str],
    rows: List[int],
    use_clusters: bool,
    cluster_prefixes: List[int],
    cluster_rows: int,
    char_width: int,
    n_chars: int,
    include_static_vectors: bool,
    word_dropout: float,
    cluster_case_fallback: bool,
) -> Model[List[Doc], List[Floats2d]]:
    if len(attrs) != len(rows):
        raise ValueError(
            f"[rnn_tagger] FeatureEmbed needs one rows entry per attr: got {len(attrs)} "
            f"attrs and {len(rows)} rows."
        )
    parts = [
        chain(
            FeatureExtractor(attrs),
            list2ragged(),
            with_array(
                concatenate(
                    *[
                        chain(HashEmbed(width, n_rows, column=i, seed=7 + i, dropout=0.0), TokenDropout(word_dropout))
                        if i == 0 and word_dropout > 0
                        else HashEmbed(width, n_rows, column=i, seed=7 + i, dropout=0.0)
                        for i, n_rows in enumerate(rows)
                    ]
                )
            ),
        )
    ]
    concat_width = width * len(attrs)
    if use_clusters:
        parts.append(
            chain(
                BrownClusterFeatures(cluster_prefixes, case_fallback=cluster_case_fallback),
                list2ragged(),
                with_array(
                    concatenate(
                        *[
                            HashEmbed(width, cluster_rows, column=i, seed=101 + i, dropout=0.0)
                            for i in range(len(cluster_prefixes))
                        ]
                    )
                ),
            )
        )
        concat_width += width * len(cluster_prefixes)
    if char_width > 0:
        parts.append(chain(CharacterEmbed(nM=char_width, nC=n_chars), list2ragged()))
        concat_width += char_width * n_chars
    if include_static_vectors:
        parts.append(StaticVectors(width, dropout=0.0))
        concat_width += width
    mix = with_array(Maxout(width, concat_width, nP=3, normalize=True, dropout=0.0))
    # chain(concatenate(*parts), mix, ragged2list()), predicting through mixed tables.
    return FusedFeatureEmbed(concatenate(*parts), mix, ragged2list(), width)
