"""Registered versions that newer ones replace, kept so that every saved
pipeline's config still resolves: each is a thin wrapper over the current
builder with the newer options off."""
from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d

from .features import build_feature_embed_v2
from .models import build_tagger


@registry.architectures("spacy_rnn_ner.BiLSTMTagger.v1")
def build_bilstm_tagger(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    depth: int = 1,
    dropout: float = 0.2,
    nO: Optional[int] = None,
    context: str = "doc",
) -> Model[List[Doc], List[Floats2d]]:
    """BiLSTMTagger.v2 without the document memory."""
    return build_tagger(embed, hidden_width, depth, dropout, nO, context, False, 0, 0, "softmax")


@registry.architectures("spacy_rnn_ner.BiLSTMCRFTagger.v1")
def build_bilstm_crf_tagger(
    embed: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 128,
    depth: int = 1,
    dropout: float = 0.2,
    nO: Optional[int] = None,
    context: str = "doc",
) -> Model[List[Doc], List[Floats2d]]:
    """BiLSTMCRFTagger.v2 without the document memory."""
    return build_tagger(embed, hidden_width, depth, dropout, nO, context, False, 0, 0, "crf")


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
    """FeatureEmbed.v2 without the unknown-word vector, the cluster case
    fallback and the character CNN."""
    return build_feature_embed_v2(
        width, attrs, rows, use_clusters, cluster_prefixes, cluster_rows, char_width, n_chars,
        include_static_vectors, min_word_count=0, word_dropout=0.0, cluster_case_fallback=False, char_cnn_filters=0,
    )


def upgrade_model_bytes(model_bytes: bytes) -> bytes:
    """Model bytes saved before the feature embedding kept its prediction cache
    out of its attrs: drop the two attrs that today's layers no longer have
    (an empty 'plan_cache', which thinc could not read back, and
    'fast_inference'). Other bytes are returned as they are."""
    import srsly

    msg = srsly.msgpack_loads(model_bytes)
    stale = [attrs for attrs in msg.get("attrs", []) if "plan_cache" in attrs]
    if not stale:
        return model_bytes
    for attrs in stale:
        attrs.pop("plan_cache", None)
        attrs.pop("fast_inference", None)
    return srsly.msgpack_dumps(msg)
