"""Small thinc layers shared by the feature embedding and the memory window."""
from typing import List, Tuple

from spacy.tokens import Doc
from thinc.api import Dropout, LayerNorm, Maxout, Model, chain
from thinc.types import Floats2d


def NormalizedMaxout(nO: int, nI: int, nP: int, dropout: float) -> Tuple[Model, Model, Model]:
    """thinc's Maxout(nO, nI, nP, normalize=True, dropout=dropout), built with
    the same nodes (so saved weights load), plus its maxout and layer-norm
    nodes, which the prediction fast paths call directly."""
    maxout = Maxout(nO, nI, nP=nP)
    layernorm = LayerNorm(nI=nO)
    return chain(chain(maxout, layernorm), Dropout(dropout)), maxout, layernorm


def CharacterEmbed(nM: int, nC: int) -> Model[List[Doc], List[Floats2d]]:
    """spaCy's character embedding layer: one nM-wide row for each of the
    first and last nC // 2 characters of a word (nC * nM per token).

    spaCy registers it only inside its `spacy.CharacterEmbed.v2` tok2vec
    (which adds its own hash embedding and mixing layer); the bare layer is
    importable only from a private module, so this is the one place that
    imports it (tests/ml/test_layers.py fails clearly if it moves).
    """
    from spacy.ml._character_embed import CharacterEmbed as SpacyCharacterEmbed

    return SpacyCharacterEmbed(nM=nM, nC=nC)



