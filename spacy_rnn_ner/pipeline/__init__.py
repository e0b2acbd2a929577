"""The spaCy side: the `rnn_tagger` component and the tag lattice it decodes with."""
from .lattice import TagLattice
from .rnn_tagger import RNNTagger, make_rnn_tagger

__all__ = ["RNNTagger", "make_rnn_tagger", "TagLattice"]
