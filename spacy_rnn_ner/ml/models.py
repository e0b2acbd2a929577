"""The registered taggers: embed >> BiLSTM (by doc or by sentence) >> optional
document memory and window >> per-token tag scores (softmax or CRF emissions)."""
import warnings
from typing import List, Optional

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, Softmax_v2, chain, with_array
from thinc.types import Floats2d

from ..util import map_length_groups, no_backprop
from .bilstm import PackedBiLSTMLayer
from .crf import CRFTransitions
from .memory import WindowMaxout, with_memory
from .ops import use_torch_cpu_ops

CONTEXTS = ("doc", "sentence")
OUTPUTS = ("softmax", "crf")
# Longer docs without sentence boundaries get a warning under context = "sentence".
UNSPLIT_WARNING_LENGTH = 100


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
    """Per-token tag probabilities (softmax) from a bidirectional LSTM over an embedding.

    embed: any layer mapping docs to one row per token (FeatureEmbed,
        MultiHashEmbed, CharacterEmbed, a Tok2VecListener).
    hidden_width: LSTM units per direction; the output of the BiLSTM is twice this.
    depth: stacked LSTM layers.
    dropout: applied in training to the LSTM's input and output.
    nO: number of tags; inferred from the labels at initialization when None.
    context: "doc" runs the LSTM over whole docs, "sentence" over each sentence.
    doc_memory: each token also sees the mean LSTM state of the other
        occurrences of its (lower-case) word in the doc.
    memory_lstm_width, memory_conv_width: a second BiLSTM, or a window Maxout
        over each token and its two neighbours, reading the [state, memory]
        rows (at most one of them; 0 is off; both need doc_memory).
    """
    return build_tagger(
        embed, hidden_width, depth, dropout, nO, context, doc_memory, memory_lstm_width, memory_conv_width, "softmax"
    )


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
    """BiLSTMTagger.v2 with a linear-chain CRF output: per-token emission
    scores plus learned transition scores, trained with the forward algorithm
    and decoded with Viterbi under the tag scheme's constraints."""
    return build_tagger(
        embed, hidden_width, depth, dropout, nO, context, doc_memory, memory_lstm_width, memory_conv_width, "crf"
    )


def build_tagger(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int,
    depth: int,
    dropout: float,
    nO: Optional[int],
    context: str,
    doc_memory: bool,
    memory_lstm_width: int,
    memory_conv_width: int,
    output: str,
) -> Model[List[Doc], List[Floats2d]]:
    """The one builder behind every registered tagger (see BiLSTMTagger.v2).

    Refs: "embed" (also "tok2vec"), "encoder" (the BiLSTM), "output" (the
    layer whose width is the number of tags) and, for the CRF, "crf".
    """
    if output not in OUTPUTS:
        raise ValueError(f"[rnn_tagger] output must be one of {OUTPUTS}, got {output!r}.")
    width = output_width(embed)
    if width is None:
        raise ValueError(
            "[rnn_tagger] Cannot tell the output width of the `embed` layer "
            f"'{embed.name}'. Use an embedding whose width is set in the config "
            "(spacy_rnn_ner.FeatureEmbed.v2, spacy.MultiHashEmbed.v2, spacy.CharacterEmbed.v2, "
            "spacy.Tok2VecListener.v1)."
        )
    if memory_lstm_width and memory_conv_width:
        raise ValueError("[rnn_tagger] Set memory_lstm_width or memory_conv_width, not both.")
    bilstm = PackedBiLSTMLayer(width, hidden_width, depth, dropout)
    memory_encoder = None
    if memory_lstm_width:
        memory_encoder = PackedBiLSTMLayer(4 * hidden_width, memory_lstm_width, 1, dropout)
    elif memory_conv_width:
        memory_encoder = WindowMaxout(4 * hidden_width, memory_conv_width, 1, dropout)
    encoder = ContextualEncoder(embed, bilstm, context, doc_memory, memory_encoder)
    if output == "softmax":
        scores: Model = Softmax_v2(nO=nO, nI=encoder.get_dim("nO"))
        model: Model[List[Doc], List[Floats2d]] = chain(encoder, with_array(scores))
    else:
        scores = Linear(nO=nO, nI=encoder.get_dim("nO"))
        crf = CRFTransitions(nO)
        model = chain(encoder, with_array(scores), crf)
        model.set_ref("crf", crf)
    model.set_ref("embed", embed)
    model.set_ref("tok2vec", embed)
    model.set_ref("encoder", bilstm)
    model.set_ref("output", scores)
    return use_torch_cpu_ops(model)


def output_width(model: Model) -> Optional[int]:
    """The width of the rows `model` outputs, read off its layers before initialization.

    The torch module must be built at construction, since `spacy.load`
    rebuilds the model from the config before it loads the weights, so its
    input width must be known then. spaCy's embedding layers (MultiHashEmbed,
    CharacterEmbed) are chains that end in a mixing layer and a reshaping
    layer without dims: the width is that of the last layer that knows it.
    """
    if model.has_dim("nO") is True:
        return model.get_dim("nO")
    for layer in reversed(model.layers):
        width = output_width(layer)
        if width is not None:
            return width
    return None


def ContextualEncoder(
    embed: Model[List[Doc], List[Floats2d]],
    encoder: Model[List[Floats2d], List[Floats2d]],
    context: str,
    doc_memory: bool = False,
    memory_encoder: Optional[Model[List[Floats2d], List[Floats2d]]] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """Embed each doc, then run the encoder over whole docs or over each sentence.

    With context = "doc" the LSTM reads across sentence boundaries. With
    "sentence" it restarts at every sentence start the doc carries (docs
    without sentence boundaries are one sentence). With doc_memory, each row
    is followed by the mean row of the other occurrences of the same word in
    the doc (memory.py), which doubles the output width. A memory_encoder (a
    second BiLSTM, or a window Maxout) then reads those [state, memory] rows
    in the same context, so that what the other mentions of a word say
    reaches its neighbours too; its rows are appended to the output.
    """
    if context not in CONTEXTS:
        raise ValueError(f"[rnn_tagger] context must be one of {CONTEXTS}, got {context!r}.")
    if memory_encoder is not None and not doc_memory:
        raise ValueError("[rnn_tagger] memory_lstm_width and memory_conv_width need doc_memory = true.")
    width = encoder.get_dim("nO")
    nO = 2 * width if doc_memory else width
    layers = [embed, encoder]
    refs = {}
    if memory_encoder is not None:
        layers.append(memory_encoder)
        refs["memory_encoder"] = memory_encoder
        nO += memory_encoder.get_dim("nO")
    model: Model[List[Doc], List[Floats2d]] = Model(
        "contextual_encoder",
        _contextual_forward,
        init=_contextual_init,
        layers=layers,
        attrs={"context": context, "doc_memory": doc_memory},
        dims={"nO": nO},
    )
    for name, node in refs.items():
        model.set_ref(name, node)
    return model


def _contextual_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    embed, encoder = model.layers[:2]
    embed.initialize(X=X)
    for layer in model.layers[1:]:
        layer.initialize()
    if X and embed.has_dim("nO") is not True:  # the width came from output_width's look-ahead
        width = embed.predict(X[:1])[0].shape[1]
        if width != encoder.get_dim("nI"):
            raise ValueError(
                f"[rnn_tagger] The `embed` layer '{embed.name}' outputs rows of width {width}, "
                f"but the BiLSTM was built for {encoder.get_dim('nI')}: set the embedding's "
                "width in the config, or use one whose last layer declares it."
            )


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
    # SENT_START is 1 at a sentence start (-1 inside, 0 unset); read as one array.
    starts = numpy.flatnonzero(doc.to_array("SENT_START").reshape(-1) == 1)
    bounds = numpy.concatenate([[0], starts[starts > 0], [len(doc)]])
    return numpy.diff(bounds).tolist()


def _contextual_forward(model: Model, docs: List[Doc], is_train: bool):
    embed, encoder = model.layers[:2]
    splits = None if model.attrs["context"] == "doc" else [_sentence_lengths(doc) for doc in docs]
    Xs, backprop_embed = embed(docs, is_train)
    Ys, backprop_encoder = _run_in_context(model, encoder, Xs, splits, is_train)
    if not model.attrs["doc_memory"]:
        return Ys, lambda dYs: backprop_embed(backprop_encoder(dYs))
    xp = model.ops.xp
    Ms, backprop_memory = with_memory(model.ops, Ys, docs)
    if not model.has_ref("memory_encoder"):
        return Ms, lambda dMs: backprop_embed(backprop_encoder(backprop_memory(dMs)))
    second = model.get_ref("memory_encoder")
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

    An LSTM layer pads its inputs to the longest one: a batch of thousands
    of sentences with one 300-token table row would pad to gigabytes. The
    outputs are the same, since each sequence is run on its own. Layers that
    do not pad (attrs["pads_to_longest"] False, the window Maxout) take all
    sequences in one call.
    """
    if not encoder.attrs.get("pads_to_longest", True):
        return encoder.predict(Xs)
    width = encoder.get_dim("nO")
    return map_length_groups(Xs, [len(X) for X in Xs], encoder.predict, lambda: encoder.ops.alloc2f(0, width))


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
