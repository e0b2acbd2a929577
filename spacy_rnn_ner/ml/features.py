"""Word features for NER: hashed lexical attributes, Brown-cluster path
prefixes and character embeddings, concatenated and mixed by a Maxout layer."""
import functools
import warnings
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.attrs import IS_UPPER, LENGTH
from spacy.ml.featureextractor import FeatureExtractor
from spacy.ml.staticvectors import StaticVectors
from spacy.strings import get_string_id
from spacy.tokens import Doc
from spacy.util import registry
from spacy.attrs import intify_attr
from thinc.api import Model, chain, concatenate, list2ragged, ragged2list, with_array
from thinc.types import Floats2d, Ints2d

from .char_cnn import CharCNN
from .fused_embed import FeatureEmbedLayer, Layout
from .layers import CharacterEmbed, HashEmbed, NormalizedMaxout

CLUSTER_TABLE = "lexeme_cluster"


@functools.lru_cache(maxsize=4)
def _load_cluster_table(lang: str) -> Tuple[numpy.ndarray, numpy.ndarray, str]:
    """Sorted word hashes and their Brown clusters from spacy-lookups-data, or
    empty arrays and the reason. Kept per language for the process: reading
    the English table takes seconds, and every initialization needs it."""
    try:
        from spacy.lookups import load_lookups

        table = load_lookups(lang, [CLUSTER_TABLE], strict=True).get_table(CLUSTER_TABLE)
    except (ImportError, ValueError, KeyError) as err:
        return numpy.zeros((0,), dtype="uint64"), numpy.zeros((0,), dtype="uint32"), f"{type(err).__name__}: {err}"
    keys = numpy.fromiter(table.keys(), dtype="uint64", count=len(table))
    values = numpy.fromiter(table.values(), dtype="uint32", count=len(table))
    order = numpy.argsort(keys)
    return keys[order], values[order], ""


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
        keys, values, problem = _load_cluster_table(X[0].lang_)
        if problem:
            warnings.warn(
                f"[rnn_tagger] No Brown clusters for language '{X[0].lang_}' ({problem}), so the "
                "model trains without the cluster features. Set use_clusters = false in the "
                "embed config (spacy_rnn_ner.FeatureEmbed) to leave them out and silence this "
                "warning, or install spacy-lookups-data if it is missing."
            )
        model.attrs["keys"] = keys
        model.attrs["values"] = values


def lookup_clusters(keys: numpy.ndarray, values: numpy.ndarray, orths: numpy.ndarray) -> numpy.ndarray:
    """Cluster ids for word hashes (0 where the word has none), by binary search.
    A table loaded from compact storage holds the low 32 bits of each hash
    (uint32 keys; see storage.py), and is searched by the low 32 bits."""
    if len(keys) == 0:
        return numpy.zeros(orths.shape, dtype="uint32")
    if keys.dtype == numpy.uint32:
        orths = (orths & 0xFFFFFFFF).astype(numpy.uint32)
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


UNKNOWN_WORD = get_string_id("<rnn_tagger:unknown-word>")


def KnownWords(attr: str, column: int, min_count: int, word_dropout: float) -> Model[List[Ints2d], List[Ints2d]]:
    """Map the word ids in `column` that are not in the training vocabulary to
    one UNKNOWN_WORD id, and in training also a random `word_dropout` share
    of the known ones (the classic UNK replacement of BiLSTM taggers).

    Without it, a word never seen in training still hashes to a sum of table
    rows trained for other words: noise the tagger never learned to ignore.
    With it, an unseen word gets the one learned "unknown" vector, whose
    meaning word dropout teaches, and the tagger leans on the shape, affix,
    cluster and character features for it - the case of most test-set entities.

    The vocabulary (`attr` values seen at least `min_count` times) is filled
    from all training docs by the rnn_tagger component at initialization
    (fill_known_words), kept in attrs and saved with the model.
    min_count = 0 switches the mapping off.
    """
    return Model(
        "known_words",
        _known_words_forward,
        init=_known_words_init,
        attrs={
            "attr": attr,
            "column": column,
            "min_count": min_count,
            "word_dropout": word_dropout,
            "known_words": numpy.zeros((0,), dtype="uint64"),
        },
    )


def _known_words_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    pass  # filled from the whole training set, not the init sample: fill_known_words


def fill_known_words(embed: Model, docs: Iterable[Doc]) -> int:
    """Set the training vocabulary of the embedding's KnownWords layer
    (FeatureEmbed.v2) from `docs`; return its size (0 if it has none)."""
    if not embed.has_ref("known_words"):
        return 0
    layer = embed.get_ref("known_words")
    if layer.attrs["min_count"] <= 0:
        return 0
    counts: Counter = Counter()
    attr_id = intify_attr(layer.attrs["attr"])
    for doc in docs:
        if len(doc):
            counts.update(doc.to_array(attr_id).tolist())
    known = numpy.array(sorted(k for k, n in counts.items() if n >= layer.attrs["min_count"]), dtype="uint64")
    layer.attrs["known_words"] = known
    return len(known)


def _known_words_forward(model: Model, Xs: List[Ints2d], is_train: bool):
    known = model.attrs["known_words"]
    if model.attrs["min_count"] <= 0 or len(known) == 0:
        return Xs, lambda dY: dY
    column, rate = model.attrs["column"], model.attrs["word_dropout"]
    out = []
    for X in Xs:
        X = model.ops.to_numpy(X).astype("uint64", copy=True)
        words = X[:, column]
        pos = numpy.minimum(numpy.searchsorted(known, words), len(known) - 1)
        unknown = known[pos] != words
        if is_train and rate > 0:
            unknown |= numpy.random.uniform(size=len(words)) < rate
        words[unknown] = UNKNOWN_WORD
        out.append(model.ops.asarray(X, dtype="uint64"))
    return out, lambda dY: dY


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
    min_word_count: int = 1,
    word_dropout: float = 0.1,
    cluster_case_fallback: bool = True,
    char_cnn_filters: int = 0,
    char_cnn_width: int = 25,
) -> Model[List[Doc], List[Floats2d]]:
    """Embed each token from hashed attributes, Brown clusters and its characters,
    mixed by a Maxout layer.

    width: the output width (and the width of each hash embedding table).
    attrs, rows: lexical attributes to hash (e.g. NORM, PREFIX, SUFFIX, SHAPE)
        and the number of rows of each table, as in spacy.MultiHashEmbed.v2.
    use_clusters: add Brown-cluster path prefixes of `cluster_prefixes` bits,
        each hashed into a table of `cluster_rows` rows (from
        spacy-lookups-data; off, with a warning, where it has no table for
        the language).
    char_width, n_chars: spaCy's CharacterEmbed over the first and last
        characters of each word (`char_width` dimensions per character);
        char_width = 0 switches the characters off.
    include_static_vectors: also project the vocab's static word vectors
        (set [initialize] vectors) to `width` and concatenate them.

    min_word_count: the first attr (the word itself, e.g. NORM) keeps its own
        vector only for values seen at least this often in the training data;
        others share one "unknown word" vector (see KnownWords). 0: off.
    word_dropout: in training, this share of the known words is also
        replaced by "unknown word", so that its vector is learned.
    cluster_case_fallback: all-caps words and words without a cluster take
        the cluster of their title- or lower-case form (see BrownClusterFeatures).
    char_cnn_filters: add a character CNN with this many filters (window 3
        over `char_cnn_width`-dimensional character embeddings, max over the
        word; see char_cnn.CharCNN). 0: off.
    char_cnn_width: the width of the character CNN's character embeddings.
    """
    if len(attrs) != len(rows):
        raise ValueError(
            f"[rnn_tagger] FeatureEmbed needs one rows entry per attr: got {len(attrs)} "
            f"attrs and {len(rows)} rows."
        )
    parts: List[Model] = []
    layout: Layout = []
    refs: Dict[str, Model] = {}

    def add_hashed(extract: Model, tables: List[Model]) -> None:
        j = len(parts)
        parts.append(chain(extract, list2ragged(), with_array(concatenate(*tables))))
        names = [f"table_{j}_{k}" for k in range(len(tables))]
        # HashEmbed(column=...) wraps the table in a column selector: refer to the node with the table.
        refs.update((name, next(node for node in table.walk() if "E" in node.param_names)) for name, table in zip(names, tables))
        refs[f"extract_{j}"] = extract
        layout.append(["hashed", f"extract_{j}", names])

    extract = FeatureExtractor(attrs)
    if min_word_count > 0:
        known = KnownWords(attrs[0], 0, min_word_count, word_dropout)
        refs["known_words"] = known
        extract = chain(extract, known)
    add_hashed(extract, [HashEmbed(width, n_rows, column=i, seed=7 + i, dropout=0.0) for i, n_rows in enumerate(rows)])
    concat_width = width * len(attrs)
    if use_clusters:
        tables = [HashEmbed(width, cluster_rows, column=i, seed=101 + i, dropout=0.0) for i in range(len(cluster_prefixes))]
        add_hashed(BrownClusterFeatures(cluster_prefixes, case_fallback=cluster_case_fallback), tables)
        concat_width += width * len(cluster_prefixes)
    if char_width > 0:
        chars = CharacterEmbed(nM=char_width, nC=n_chars)
        refs[f"chars_{len(parts)}"] = chars
        layout.append(["chars", f"chars_{len(parts)}"])
        parts.append(chain(chars, list2ragged()))
        concat_width += char_width * n_chars
    dense: List[Tuple[Model, int]] = []
    if char_cnn_filters > 0:
        dense.append((chain(CharCNN(n_filters=char_cnn_filters, char_width=char_cnn_width), list2ragged()), char_cnn_filters))
    if include_static_vectors:
        dense.append((StaticVectors(width, dropout=0.0), width))
    for part, part_width in dense:
        refs[f"dense_{len(parts)}"] = part
        layout.append(["dense", f"dense_{len(parts)}", part_width])
        parts.append(part)
        concat_width += part_width
    mix, refs["maxout"], refs["layernorm"] = NormalizedMaxout(width, concat_width, 3, 0.0)
    return FeatureEmbedLayer(concatenate(*parts), with_array(mix), ragged2list(), width, layout, refs)
