"""FeatureEmbed (Brown clusters, characters), the CRF architecture and sentence context."""
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from thinc.api import Model

import spacy_rnn_ner.ml.features as features
from spacy_rnn_ner.ml.features import BrownClusterFeatures, lookup_clusters

from tests.helpers import SMALL_MODEL, TRAIN_DATA, is_valid_sequence, make_examples, randomize_output, train_tagger

FEATURE_EMBED = {
    "@architectures": "spacy_rnn_ner.FeatureEmbed.v1",
    "width": 32,
    "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
    "rows": [2000, 500, 500, 200],
    "cluster_rows": 1000,
    "char_width": 8,
}


def nlp_with(arch="spacy_rnn_ner.BiLSTMCRFTagger.v1", lang="en", **model_overrides):
    nlp = spacy.blank(lang)
    model = dict(SMALL_MODEL, embed=dict(FEATURE_EMBED), **model_overrides)
    model["@architectures"] = arch
    nlp.add_pipe("rnn_tagger", config={"model": model})
    return nlp


@pytest.fixture(scope="module")
def crf_nlp():
    nlp = nlp_with()
    train_tagger(nlp, make_examples(nlp))
    return nlp


def test_lookup_clusters_binary_search():
    keys = numpy.array([3, 10, 42], dtype="uint64")
    values = numpy.array([7, 8, 9], dtype="uint32")
    found = lookup_clusters(keys, values, numpy.array([42, 1, 10, 99, 3], dtype="uint64"))
    assert found.tolist() == [9, 0, 8, 0, 7]


def test_cluster_prefixes_group_similar_words():
    nlp = spacy.blank("en")
    layer = BrownClusterFeatures([4, 8, 20])
    docs = [nlp.make_doc("London Berlin Moscow the zzqxv")]
    layer.initialize(X=docs)
    feats = layer.predict(docs)[0]
    london, berlin, moscow, the, unknown = feats.tolist()
    assert london[:2] == berlin[:2] == moscow[:2]  # share the low 8 bits of the path
    assert london[2] != berlin[2]  # full paths differ
    assert london[0] != the[0]
    assert unknown == [0, 0, 0]


def test_language_without_clusters_warns_once_and_trains():
    """Finnish has no Brown clusters in spacy-lookups-data: one warning that
    names the setting, an empty table, and a model that still learns."""
    nlp = nlp_with(lang="fi")
    examples = make_examples(nlp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer = nlp.initialize(lambda: examples)
    messages = [str(w.message) for w in caught if "Brown clusters" in str(w.message)]
    assert len(messages) == 1 and "'fi'" in messages[0] and "use_clusters = false" in messages[0]
    clusters = next(n for n in nlp.get_pipe("rnn_tagger").model.walk() if n.name == "brown_clusters")
    assert len(clusters.attrs["keys"]) == 0
    first = nlp.update(examples, sgd=optimizer)["rnn_tagger"]
    for _ in range(30):
        last = nlp.update(examples, sgd=optimizer)["rnn_tagger"]
    assert last < first / 2


def test_crf_overfits_with_valid_sequences(crf_nlp):
    tagger = crf_nlp.get_pipe("rnn_tagger")
    assert tagger.uses_crf
    assert crf_nlp.evaluate(make_examples(crf_nlp))["ents_f"] == 1.0
    transitions = tagger.model.get_ref("crf").get_param("T")
    assert numpy.abs(transitions).max() > 0  # the transition scores were learned
    lattice = tagger.lattice
    constraints = (lattice.allowed, lattice.start == 0, lattice.end == 0)
    docs = [crf_nlp.make_doc(t) for t, _ in TRAIN_DATA]
    for pred in tagger.predict(docs):
        assert is_valid_sequence(pred.tag_ids.tolist(), *constraints)


def test_saved_model_keeps_clusters_without_lookups(crf_nlp, tmp_path, monkeypatch):
    crf_nlp.to_disk(tmp_path / "p")

    def no_lookups(*args, **kwargs):
        raise AssertionError("the lookups package must not be needed after training")

    monkeypatch.setattr(features, "_load_cluster_table", no_lookups)
    loaded = spacy.load(tmp_path / "p")
    layer = next(n for n in loaded.get_pipe("rnn_tagger").model.walk() if n.name == "brown_clusters")
    assert len(layer.attrs["keys"]) > 100_000
    for text, _ in TRAIN_DATA:
        assert [(e.text, e.label_) for e in loaded(text).ents] == [(e.text, e.label_) for e in crf_nlp(text).ents]


def sentence_vs_separate(context):
    nlp = nlp_with(arch="spacy_rnn_ner.BiLSTMTagger.v1", context=context)
    nlp.initialize(lambda: make_examples(nlp))
    model = nlp.get_pipe("rnn_tagger").model
    randomize_output(model)
    words1, words2 = ["Ann", "left", "."], ["Bob", "stayed", "in", "Oslo", "."]
    both = Doc(nlp.vocab, words=words1 + words2, sent_starts=[True, False, False, True, False, False, False, False])
    joined = model.predict([both])[0]
    apart = numpy.concatenate(model.predict([Doc(nlp.vocab, words=words1), Doc(nlp.vocab, words=words2)]))
    return joined, apart


def test_sentence_context_restarts_the_lstm_at_sentence_starts():
    # The embedding sees only each token, so with the LSTM cut at the sentence
    # start the outputs equal those of the sentences as separate docs...
    joined, apart = sentence_vs_separate("sentence")
    numpy.testing.assert_allclose(joined, apart, rtol=1e-5, atol=1e-6)
    # ...while with document context, each sentence sees the other.
    joined, apart = sentence_vs_separate("doc")
    assert not numpy.allclose(joined, apart, atol=1e-4)


def test_sentence_context_trains():
    nlp = nlp_with(context="sentence")
    train_tagger(nlp, make_examples(nlp))
    assert nlp.evaluate(make_examples(nlp))["ents_f"] > 0.9


def test_case_fallback_gives_all_caps_words_their_title_case_cluster():
    nlp = spacy.blank("en")
    docs = [nlp.make_doc("JAPAN Japan LONDON London REUTERS Reuters zzqxv")]
    plain, fallback = BrownClusterFeatures([20]), BrownClusterFeatures([20], case_fallback=True)
    plain.initialize(X=docs)
    fallback.initialize(X=docs)
    without = plain.predict(docs)[0].ravel().tolist()
    with_fallback = fallback.predict(docs)[0].ravel().tolist()
    assert without[0] == without[2] != without[1]  # the table puts JAPAN and LONDON in one all-caps cluster
    assert with_fallback[0] == with_fallback[1] and with_fallback[2] == with_fallback[3]
    assert without[4] == 0 and with_fallback[4] == with_fallback[5] != 0  # REUTERS is missing; Reuters is not
    assert with_fallback[6] == 0


def test_known_words_map_unseen_and_dropped_words_to_one_id():
    nlp = spacy.blank("en")
    layer = features.KnownWords("NORM", 0, min_count=2, word_dropout=0.5)
    embed = Model("embed", lambda model, X, is_train: (X, None), refs={"known_words": layer})
    train_docs = [nlp.make_doc("Lyon Lyon Berg Paris Paris")]
    assert features.fill_known_words(embed, train_docs) == 2  # Berg was seen once
    ids = [numpy.array([[nlp.vocab.strings[w.lower()], 7] for w in ["Lyon", "Berg", "Oslo", "Paris"]], dtype="uint64")]
    out = layer.predict(ids)[0]
    unk = features.UNKNOWN_WORD
    assert out[:, 0].tolist() == [ids[0][0, 0], unk, unk, ids[0][3, 0]]
    assert out[:, 1].tolist() == [7, 7, 7, 7]  # other columns untouched
    assert ids[0][1, 0] != unk  # the input is not modified
    many = [numpy.repeat(ids[0][:1], 2000, axis=0)]
    dropped = layer(many, is_train=True)[0][0][:, 0] == unk
    assert 0.4 < dropped.mean() < 0.6
    assert not (layer.predict(many)[0][:, 0] == unk).any()


def test_known_words_are_filled_from_all_training_docs_and_saved():
    nlp = spacy.blank("en")
    model = dict(SMALL_MODEL, embed=dict(FEATURE_EMBED, **{"@architectures": "spacy_rnn_ner.FeatureEmbed.v2"}))
    nlp.add_pipe("rnn_tagger", config={"model": model})
    examples = make_examples(nlp)
    train_tagger(nlp, examples, n_iter=2)
    layer = nlp.get_pipe("rnn_tagger").model.get_ref("embed").get_ref("known_words")
    expected = {nlp.vocab.strings[t.norm_] for eg in examples for t in eg.predicted}
    assert set(layer.attrs["known_words"].tolist()) == expected  # all docs, not the 10-doc init sample
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("rnn_tagger", config={"model": model})
    nlp2.get_pipe("rnn_tagger").from_bytes(nlp.get_pipe("rnn_tagger").to_bytes())
    layer2 = nlp2.get_pipe("rnn_tagger").model.get_ref("embed").get_ref("known_words")
    assert numpy.array_equal(layer2.attrs["known_words"], layer.attrs["known_words"])


def test_feature_embed_v2_gives_unseen_words_one_vector():
    nlp = spacy.blank("en")
    embed = spacy.registry.resolve({"x": dict(FEATURE_EMBED, **{"@architectures": "spacy_rnn_ner.FeatureEmbed.v2", "use_clusters": False, "char_width": 0, "attrs": ["NORM"], "rows": [500]})})["x"]
    docs = [nlp.make_doc("Lyon Berg Oslo Quito")]
    embed.initialize(X=docs)
    features.fill_known_words(embed, [nlp.make_doc("Lyon Berg")])
    rows = embed.predict(docs)[0]
    assert numpy.allclose(rows[2], rows[3]) and not numpy.allclose(rows[0], rows[1])
    assert not numpy.allclose(rows[0], rows[2])




@pytest.mark.parametrize("extra", [{}, {"char_cnn_filters": 12, "char_cnn_width": 6}], ids=["v2", "v2+char_cnn"])
def test_feature_embed_v2_trains(extra):
    nlp = spacy.blank("en")
    model = dict(SMALL_MODEL, embed=dict(FEATURE_EMBED, **{"@architectures": "spacy_rnn_ner.FeatureEmbed.v2"}, **extra))
    model["@architectures"] = "spacy_rnn_ner.BiLSTMCRFTagger.v1"
    nlp.add_pipe("rnn_tagger", config={"model": model})
    train_tagger(nlp, make_examples(nlp), n_iter=60)
    assert nlp.evaluate(make_examples(nlp))["ents_f"] > 0.9








def test_char_cnn_ids_and_gradients():
    from thinc.api import fix_random_seed

    from spacy_rnn_ner.ml.char_cnn import CharCNN, char_ids

    fix_random_seed(0)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc("Hello naïve-world 1996"), nlp.make_doc(""), nlp.make_doc("a " + "x" * 30)]
    ids, lengths = char_ids(docs, 20, 64)
    assert lengths.tolist() == [5, 5, 1, 5, 4, 1, 20]  # words longer than 20 characters are cut
    assert (ids[0, :5] > 0).all() and (ids[0, 5:] == 0).all()
    assert ids[0, 2] == ids[0, 3]  # the two l's of Hello
    model = CharCNN(n_filters=6, char_width=4, max_chars=20, n_rows=64)
    model.initialize()
    out, backprop = model(docs, is_train=True)
    assert [o.shape for o in out] == [(5, 6), (0, 6), (2, 6)]
    rng = numpy.random.default_rng(0)
    weights = [rng.normal(size=o.shape).astype("f") for o in out]
    backprop(weights)

    def loss() -> float:
        return sum(float((a * w).sum()) for a, w in zip(model.predict(docs), weights))

    checks = [("W", (1, 3)), ("W", (5, 10)), ("b", (2,)), ("E", (int(ids[0, 1]), 1)), ("E", (int(ids[6, 0]), 3))]
    for name, index in checks:
        param, grad = model.get_param(name), model.get_grad(name)
        old = float(param[index])
        param[index] = old + 1e-2
        plus = loss()
        param[index] = old - 1e-2
        minus = loss()
        param[index] = old
        assert abs((plus - minus) / 2e-2 - float(grad[index])) < 0.03 * max(1.0, abs(float(grad[index])))
    assert float(abs(model.get_grad("E")[0]).sum()) == 0.0  # padding row stays zero
