"""spacy-rnn-ner: a bidirectional LSTM entity tagger as a spaCy pipeline component.

Importing the package registers the `rnn_tagger` factory and the
`spacy_rnn_ner.*` architectures; spaCy also finds them through entry points,
so `spacy.blank("en").add_pipe("rnn_tagger")` works without this import.
"""
from .component import RNNTagger, make_rnn_tagger
from .corpus import create_gold_token_corpus
from .features import build_feature_embed
from .model import build_bilstm_crf_tagger, build_bilstm_tagger

__version__ = "0.1.0"
__all__ = [
    "RNNTagger",
    "make_rnn_tagger",
    "build_bilstm_tagger",
    "build_bilstm_crf_tagger",
    "build_feature_embed",
    "create_gold_token_corpus",
    "__version__",
]
