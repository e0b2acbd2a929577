"""The small shared layers, including the one wrapper around a private spaCy import."""
import numpy
import spacy

from spacy_rnn_ner.ml.layers import CharacterEmbed, NormalizedMaxout


def test_spacy_character_embed_is_still_where_we_import_it_from():
    """If spaCy moves or changes its private CharacterEmbed layer, this fails
    first and names the problem: rows of nC * nM per token, one per doc."""
    nlp = spacy.blank("en")
    docs = [nlp.make_doc("Lyon and São Paulo"), nlp.make_doc("")]
    layer = CharacterEmbed(nM=4, nC=6)
    layer.initialize(X=docs)
    out = layer.predict(docs)
    assert [x.shape for x in out] == [(4, 24), (0, 24)], "spacy.ml._character_embed.CharacterEmbed changed"


def test_normalized_maxout_has_thinc_maxouts_nodes():
    """Saved weights load into it: the same nodes, in the same order, as thinc's Maxout(normalize=True)."""
    from thinc.api import Maxout

    ours, maxout, layernorm = NormalizedMaxout(4, 6, 2, 0.1)
    theirs = Maxout(4, 6, nP=2, normalize=True, dropout=0.1)
    assert [n.name for n in ours.walk()] == [n.name for n in theirs.walk()]
    ours.initialize()
    theirs.initialize()
    theirs.from_bytes(ours.to_bytes())
    X = numpy.random.default_rng(0).normal(size=(3, 6)).astype("f")
    numpy.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6)
    numpy.testing.assert_allclose(layernorm.predict(maxout.predict(X)), ours.predict(X), rtol=1e-6)
