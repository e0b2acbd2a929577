"""spacy-rnn-ner: a bidirectional LSTM entity tagger as a spaCy pipeline component.

Importing the package registers the `rnn_tagger` and `rnn_token_tagger` factories, the
`spacy_rnn_ner.*` architectures and the corpus reader; spaCy also finds them
through entry points, so `spacy.blank("en").add_pipe("rnn_tagger")` works
without this import.
"""
from .calibration import make_calibration_callback
from .data import create_gold_token_corpus
from .ml import build_bilstm_crf_tagger_v2, build_bilstm_tagger_v2, build_feature_embed_v2
from .pipeline import RNNTagger, RNNTokenTagger, make_rnn_tagger, make_rnn_token_tagger

__version__ = "0.2.0"
__all__ = [
    "RNNTagger",
    "make_rnn_tagger",
    "RNNTokenTagger",
    "make_rnn_token_tagger",
    "build_bilstm_tagger_v2",
    "build_bilstm_crf_tagger_v2",
    "build_feature_embed_v2",
    "create_gold_token_corpus",
    "make_calibration_callback",
    "__version__",
]
