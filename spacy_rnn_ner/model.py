"""Registered thinc architectures: embed >> packed BiLSTM >> softmax over tags."""
import warnings
from typing import List, Optional

import numpy

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, Softmax_v2, chain, with_array
from thinc.types import Floats2d

from .doc_memory import with_memory
from .layers import PackedBiLSTMLayer, WindowMaxout, no_backprop
from .tag_scheme import length_groups


def output_width(model: Model) -> Optional[int]:
    """The width of the rows `model` outputs, read off its layers before initialization.

    spaCy's embedding layers (MultiHashEmbed, CharacterEmbed) only know their
    output width on an inner Maxout, so walk chains from the end and sum
    concatenations. The torch module must be built at construction (its shape
    must follow from the config so that `spacy.load` can restore it, GUIDE
    trap 5), hence this look-ahead.
    """
    if model.has_dim("nO") is True:
        return model.get_dim("nO")
    kind = getattr(model._func, "__module__", "")
    if kind == "thinc.layers.chain":
        for layer in reversed(model.layers):
            width = output_width(layer)
            if width is not None:
                return width
        return None
    if kind == "thinc.layers.concatenate":
        widths = [output_width(layer) for layer in model.layers]
        return None if any(w is None for w in widths) else sum(widths)  # type: ignore[arg-type]
    if len(model.layers) == 1:
        return output_width(model.layers[0])
    return None


CONTEXTS = ("doc", "sentence")


def ContextualEncoder(
    embed: Model[List[Doc], List[Floats2d]],
    encoder: Model[List[Floats2d], List[Floats2d]],
    context: str,
    doc_memory: bool = False,
    memory_encoder: Optional[Model[List[Floats2d], List[Floats2d]]] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """Embed each doc, then run the encoder over whole docs or over each sentence.

    With context = "doc" the LSTM reads across sentence boundaries (a CoNLL
    document is one news story). With "sentence" it restarts at every
    sentence start the doc carries (docs without sentence boundaries are
    one sentence). With doc_memory, each row is followed by the mean row of
    the other occurrences of the same word in the doc (see doc_memory.py),
    which doubles the output width. A memory_encoder (a second BiLSTM, or a
    window Maxout) then reads those [state, memory] rows in the same context, so that what the
    other mentions of a word say reaches its neighbours too; its rows are
    appended to the output.
    """
    if context not in CONTEXTS:
        raise ValueError(f"[rnn_tagger] context must be one of {CONTEXTS}, got {context!r}.")
    if memory_encoder is not None and not doc_memory:
        raise ValueError("[rnn_tagger] memory_lstm_width and memory_conv_width need doc_memory = true.")
    width = encoder.get_dim("nO")
    nO = 2 * width if doc_memory else width
    layers = [embed, encoder]
    if memory_encoder is not None:
        layers.append(memory_encoder)
        nO += memory_encoder.get_dim("nO")
    return Model(
        "contextual_encoder",
        _contextual_forward,
        init=_contextual_init,
        layers=layers,
        attrs={"context": context, "doc_memory": doc_memory},
        dims={"nO": nO},
    )


def _contextual_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    model.layers[0].initialize(X=X)
    for layer in model.layers[1:]:
        layer.initialize()


# Longer docs without sentence boundaries get a warning under context = "sentence".
UNSPLIT_WARNING_LENGTH = 100


def _sentence_lengths(doc: Doc) -> List[int]:
    if len(doc) > UNSPLIT_WARNING_LENGTH and not doc.has_annotation("SENT_START"):
        warnings.warn(
            f"[rnn_tagger] A doc of {len(doc)} tokens has no sentence boundaries, so the "
            "model (context = \"sentence\") reads it as one sentence, which costs accuracy. "
            "Add spaCy's \"sentencizer\" (or a parser or senter) before rnn_tagger in the "
            "pipeline, or give the docs sentence starts.",
            stacklevel=2,
        )
    if not len(doc):
        return []
    # SENT_START is 1 at a sentence start (-1 inside, 0 unset); a vectorised
    # read, since a Python loop over tokens cost 15% of nlp.pipe.
    starts = numpy.flatnonzero(doc.to_array("SENT_START").reshape(-1) == 1)
    bounds = numpy.concatenate([[0], starts[starts > 0], [len(doc)]])
    return numpy.diff(bounds).tolist()


def _contextual_forward(model: Model, docs: List[Doc], is_train: bool):
    embed, encoder = model.layers[:2]
    splits = None if model.attrs["context"] == "doc" else [_sentence_lengths(doc) for doc in docs]
    Xs, backprop_embed = embed(docs, is_train)
    Ys, backprop_encoder = _run_in_context(model, encoder, Xs, splits, is_train)
    if not model.attrs.get("doc_memory", False):
        return Ys, lambda dYs: backprop_embed(backprop_encoder(dYs))
    xp = model.ops.xp
    Ms, backprop_memory = with_memory(xp, Ys, docs)
    if len(model.layers) < 3:
        return Ms, lambda dMs: backprop_embed(backprop_encoder(backprop_memory(dMs)))
    second = model.layers[2]
    Zs, backprop_second = _run_in_context(model, second, Ms, splits, is_train)
    out = [xp.hstack([M, Z]) for M, Z in zip(Ms, Zs)]
    width = second.get_dim("nI")

    def backprop(dOut: List[Floats2d]) -> List[Floats2d]:
        dZs = [xp.ascontiguousarray(d[:, width:]) for d in dOut]
        dMs = [d[:, :width] + dM for d, dM in zip(dOut, backprop_second(dZs))]
        return backprop_embed(backprop_encoder(backprop_memory(dMs)))

    return out, backprop


def _run_in_context(
    model: Model, encoder: Model, Xs: List[Floats2d], splits: Optional[List[List[int]]], is_train: bool
):
    """The encoder over each doc's rows (splits None) or over each sentence's."""
    if splits is None:
        if not is_train:
            return _predict_by_length(encoder, Xs), no_backprop
        return encoder(Xs, is_train)
    xp = model.ops.xp
    pieces = [piece for X, lengths in zip(Xs, splits) for piece in _split(xp, X, lengths)]
    if not is_train:
        return _join(model, _predict_by_length(encoder, pieces), splits, encoder.get_dim("nO")), no_backprop
    Y_pieces, backprop_encoder = encoder(pieces, is_train)
    Ys = _join(model, Y_pieces, splits, encoder.get_dim("nO"))
    in_width = encoder.get_dim("nI")

    def backprop(dYs: List[Floats2d]) -> List[Floats2d]:
        d_pieces = [piece for dY, lengths in zip(dYs, splits) for piece in _split(xp, dY, lengths)]
        return _join(model, backprop_encoder(d_pieces), splits, in_width)

    return Ys, backprop


def _predict_by_length(encoder: Model, Xs: List[Floats2d]) -> List[Floats2d]:
    """The encoder's outputs for Xs, run in groups of similar length.

    The LSTM layer pads its inputs to the longest one: a batch of thousands
    of sentences (nlp.pipe over whole documents with sentence context) with
    one 300-token table row padded to 3 GB and ran 5x slower. Grouping keeps
    the padding at most about as large as the tokens; the outputs are the
    same, since each sequence is run on its own (packed).
    """
    if not encoder.attrs.get("pads_to_longest", True):  # e.g. WindowMaxout: one call
        return encoder.predict(Xs)
    groups = length_groups([len(X) for X in Xs])
    if len(groups) <= 1:
        return encoder.predict(Xs)
    Ys: List[Optional[Floats2d]] = [None] * len(Xs)
    for group in groups:
        for i, Y in zip(group, encoder.predict([Xs[i] for i in group])):
            Ys[i] = Y
    width = encoder.get_dim("nO")
    return [Y if Y is not None else encoder.ops.alloc2f(0, width) for Y in Ys]


def _split(xp, X: Floats2d, lengths: List[int]) -> List[Floats2d]:
    offsets = list(xp.cumsum(xp.asarray([0] + lengths)))
    return [X[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:])]


def _join(model: Model, pieces: List[Floats2d], splits: List[List[int]], width: int) -> List[Floats2d]:
    out, i = [], 0
    for lengths in splits:
        doc_pieces = pieces[i : i + len(lengths)]
        i += len(lengths)
        out.append(model.ops.xp.concatenate(doc_pieces) if doc_pieces else model.ops.alloc2f(0, width))
    return out


def _encoder(
    embed: Model,
    hidden_width: int,
    depth: int,
    dropout: float,
    context: str,
    doc_memory: bool = False,
    memory_lstm_width: int = 0,
    memory_conv_width: int = 0,
) -> Model:
    width = output_width(embed)
    if width is None:
        raise ValueError(
            "[rnn_tagger] Cannot tell the output width of the `embed` layer "
            f"'{embed.name}'. Use an embedding whose width is set in the config "
            "(spacy.MultiHashEmbed.v2, spacy.CharacterEmbed.v2, spacy.Tok2VecListener.v1, "
            "spacy_rnn_ner.FeatureEmbed.v1)."
        )
    encoder = PackedBiLSTMLayer(width, hidden_width, depth, dropout)
    memory_encoder = None
    if memory_lstm_width and memory_conv_width:
        raise ValueError("[rnn_tagger] Set memory_lstm_width or memory_conv_width, not both.")
    if memory_lstm_width:
        memory_encoder = PackedBiLSTMLayer(4 * hidden_width, memory_lstm_width, 1, dropout)
    elif memory_conv_width:
        memory_encoder = WindowMaxout(4 * hidden_width, memory_conv_width, 1, dropout)
    return ContextualEncoder(embed, encoder, context, doc_memory, memory_encoder)


def _set_refs(model: Model, embed: Model, encoder: Model, output: Model) -> None:
    model.set_ref("embed", embed)
    model.set_ref("tok2vec", embed)
    model.set_ref("encoder", encoder.layers[1])
    model.set_ref("output", output)


@registry.architectures("spacy_rnn_ner.BiLSTMTagger.v1")
def build_bilstm_tagger(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    depth: int = 1,
    dropout: float = 0.2,
    nO: Optional[int] = None,
    context: str = "doc",
) -> Model[List[Doc], List[Floats2d]]:
    """Per-token tag probabilities from a bidirectional LSTM over an embedding.

    embed: any layer mapping docs to one row per token (MultiHashEmbed,
        CharacterEmbed, FeatureEmbed, a Tok2VecListener).
    hidden_width: LSTM units per direction; the output of the BiLSTM is twice this.
    depth: stacked LSTM layers.
    dropout: applied in training to the LSTM's input and output.
    nO: number of tags; inferred from the labels at initialization when None.
    context: "doc" runs the LSTM over whole docs, "sentence" over each sentence.
    """
    return _softmax_tagger(embed, hidden_width, depth, dropout, nO, context, doc_memory=False)


def _softmax_tagger(
    embed: Model,
    hidden_width: int,
    depth: int,
    dropout: float,
    nO: Optional[int],
    context: str,
    doc_memory: bool,
    memory_lstm_width: int = 0,
    memory_conv_width: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    encoder = _encoder(embed, hidden_width, depth, dropout, context, doc_memory, memory_lstm_width, memory_conv_width)
    output = Softmax_v2(nO=nO, nI=encoder.get_dim("nO"))
    model: Model[List[Doc], List[Floats2d]] = chain(encoder, with_array(output))
    _set_refs(model, embed, encoder, output)
    return model


def CRFTransitions(nO: Optional[int] = None) -> Model[List[Floats2d], List[Floats2d]]:
    """Holds the CRF's learned tag-transition scores; passes the emission scores through.

    The CRF loss and decoding live in the component (they need the gold tags
    and the scheme's constraints); this layer owns the parameter so that
    thinc's optimizer, averaging and serialization handle it like any other.
    """
    return Model(
        "crf_transitions",
        lambda model, X, is_train: (X, lambda dY: dY),
        init=_crf_init,
        dims={"nO": nO},
        params={"T": None},
    )


def _crf_init(model: Model, X=None, Y=None) -> None:
    n = model.get_dim("nO")
    model.set_param("T", model.ops.alloc2f(n, n))


@registry.architectures("spacy_rnn_ner.BiLSTMCRFTagger.v1")
def build_bilstm_crf_tagger(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    depth: int = 1,
    dropout: float = 0.2,
    nO: Optional[int] = None,
    context: str = "doc",
) -> Model[List[Doc], List[Floats2d]]:
    """A BiLSTM with a linear-chain CRF output: per-token emission scores plus
    learned transition scores, trained with the forward algorithm and decoded
    with Viterbi under the tag scheme's constraints. Arguments as BiLSTMTagger.v1.
    """
    return _crf_tagger(embed, hidden_width, depth, dropout, nO, context, doc_memory=False)


def _crf_tagger(
    embed: Model,
    hidden_width: int,
    depth: int,
    dropout: float,
    nO: Optional[int],
    context: str,
    doc_memory: bool,
    memory_lstm_width: int = 0,
    memory_conv_width: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    encoder = _encoder(embed, hidden_width, depth, dropout, context, doc_memory, memory_lstm_width, memory_conv_width)
    output = Linear(nO=nO, nI=encoder.get_dim("nO"))
    crf = CRFTransitions(nO)
    model: Model[List[Doc], List[Floats2d]] = chain(encoder, with_array(output), crf)
    _set_refs(model, embed, encoder, output)
    model.set_ref("crf", crf)
    return model


# v2 adds `doc_memory`; v1 keeps its signature and behaviour.
@registry.architectures("spacy_rnn_ner.BiLSTMTagger.v2")
def build_bilstm_tagger_v2(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    depth: int = 1,
    dropout: float = 0.2,
    nO: Optional[int] = None,
    context: str = "doc",
    doc_memory: bool = True,
    memory_lstm_width: int = 0,
    memory_conv_width: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """BiLSTMTagger.v1 plus `doc_memory`: each token also sees the mean LSTM
    state of the other occurrences of its (lower-case) word in the doc."""
    return _softmax_tagger(embed, hidden_width, depth, dropout, nO, context, doc_memory, memory_lstm_width, memory_conv_width)


@registry.architectures("spacy_rnn_ner.BiLSTMCRFTagger.v2")
def build_bilstm_crf_tagger_v2(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    depth: int = 1,
    dropout: float = 0.2,
    nO: Optional[int] = None,
    context: str = "doc",
    doc_memory: bool = True,
    memory_lstm_width: int = 0,
    memory_conv_width: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """BiLSTMCRFTagger.v1 plus `doc_memory` (see BiLSTMTagger.v2)."""
    return _crf_tagger(embed, hidden_width, depth, dropout, nO, context, doc_memory, memory_lstm_width, memory_conv_width)
