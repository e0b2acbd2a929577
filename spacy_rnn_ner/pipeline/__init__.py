"""The spaCy side: the `rnn_tagger` (entities) and `rnn_token_tagger` (one tag
per token) components, their shared base and the tag lattice they decode with."""
from .labeller import SequenceLabeller
from .lattice import TagLattice
from .rnn_tagger import RNNTagger, make_rnn_tagger
from .token_tagger import RNNTokenTagger, make_rnn_token_tagger

__all__ = ["RNNTagger", "make_rnn_tagger", "RNNTokenTagger", "make_rnn_token_tagger", "SequenceLabeller", "TagLattice"]
