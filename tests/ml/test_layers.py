"""The small shared layers, including the one wrapper around a private spaCy import."""
import numpy
import spacy

from spacy_rnn_ner.ml.layers import CharacterEmbed, HashEmbed, NormalizedMaxout


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


def test_hash_embed_equals_thincs_in_nodes_outputs_and_gradients():
    """Our HashEmbed adds its gradient into the table's in place; it must have
    thinc's nodes (saved weights load), outputs and table gradient, exactly
    while the gradient starts at zero (as after every optimizer step)."""
    from thinc.api import HashEmbed as ThincHashEmbed
    from thinc.api import set_dropout_rate

    ours = HashEmbed(8, 50, seed=7, column=1, dropout=0.0)
    theirs = ThincHashEmbed(8, 50, seed=7, column=1, dropout=0.0)
    assert [(n.name, n.param_names) for n in ours.walk()] == [(n.name, n.param_names) for n in theirs.walk()]
    ids = numpy.random.default_rng(0).integers(0, 30, size=(40, 2)).astype("uint64")  # repeated ids collide in rows
    ours.initialize(X=ids)
    theirs.initialize(X=ids)
    theirs.from_bytes(ours.to_bytes())
    table = next(n for n in ours.walk() if "E" in n.param_names)
    their_table = next(n for n in theirs.walk() if "E" in n.param_names)
    for model in (ours, theirs):
        set_dropout_rate(model, 0.5)  # spaCy sets every layer's rate in training: one mask per call
    d_out = numpy.random.default_rng(1).normal(size=(40, 8)).astype("f")
    for step in range(2):
        numpy.random.seed(step)
        Y1, backprop1 = ours(ids, is_train=True)
        numpy.random.seed(step)
        Y2, backprop2 = theirs(ids, is_train=True)
        numpy.testing.assert_array_equal(Y1, Y2)
        backprop1(d_out.copy())
        backprop2(d_out.copy())
        numpy.testing.assert_array_equal(table.get_grad("E"), their_table.get_grad("E"))
        assert table.get_grad("E").any()
        table.get_grad("E").fill(0)  # as the optimizer leaves it
        their_table.get_grad("E").fill(0)
