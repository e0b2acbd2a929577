"""Registered thinc architectures: embed >> packed BiLSTM >> softmax over tags."""
from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, Softmax_v2, chain, with_array
from thinc.types import Floats2d

from .layers import PackedBiLSTMLayer


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


@registry.architectures("spacy_rnn_ner.BiLSTMTagger.v1")
def build_bilstm_tagger(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    depth: int = 1,
    dropout: float = 0.2,
    nO: Optional[int] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """Per-token tag probabilities from a bidirectional LSTM over an embedding.

    embed: any layer mapping docs to one row per token (MultiHashEmbed,
        CharacterEmbed, a Tok2VecListener).
    hidden_width: LSTM units per direction; the output of the BiLSTM is twice this.
    depth: stacked LSTM layers.
    dropout: applied in training to the LSTM's input and output.
    nO: number of tags; inferred from the labels at initialization when None.
    """
    width = output_width(embed)
    if width is None:
        raise ValueError(
            "[rnn_tagger] Cannot tell the output width of the `embed` layer "
            f"'{embed.name}'. Use an embedding whose width is set in the config "
            "(spacy.MultiHashEmbed.v2, spacy.CharacterEmbed.v2, spacy.Tok2VecListener.v1)."
        )
    encoder = PackedBiLSTMLayer(width, hidden_width, depth, dropout)
    output = Softmax_v2(nO=nO, nI=2 * hidden_width)
    model: Model[List[Doc], List[Floats2d]] = chain(embed, encoder, with_array(output))
    model.set_ref("embed", embed)
    model.set_ref("tok2vec", embed)
    model.set_ref("encoder", encoder)
    model.set_ref("output", output)
    model.attrs["uses_crf"] = False
    return model
