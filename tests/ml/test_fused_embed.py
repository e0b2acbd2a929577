"""The feature embedding's fast path (mixed tables) against the layer-by-layer path."""
import copy
import threading

import numpy
import pytest
import spacy

from spacy_rnn_ner.ml.fused_embed import plain_forward

from tests.helpers import SMALL_MODEL, TRAIN_DATA, make_examples, train_tagger

EMBED = {
    "@architectures": "spacy_rnn_ner.FeatureEmbed.v2",
    "width": 24,
    "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
    "rows": [500, 200, 200, 100],
    "cluster_rows": 300,
    "char_width": 6,
    "n_chars": 4,
}
VARIANTS = {
    "v1": {"@architectures": "spacy_rnn_ner.FeatureEmbed.v1"},
    "v2": {},
    "char_cnn": {"char_cnn_filters": 8, "char_cnn_width": 4, "use_clusters": False},
    "static_vectors": {"include_static_vectors": True, "use_clusters": False},
}


def trained(variant: str):
    nlp = spacy.blank("en")
    if variant == "static_vectors":
        nlp.vocab.reset_vectors(width=6)
        for i, word in enumerate(["Lyon", "Berg", "Angela", "flew"]):
            nlp.vocab.set_vector(word, numpy.arange(6, dtype="f") * (i + 1) / 10)
    model = dict(SMALL_MODEL, embed=dict(EMBED, **VARIANTS[variant]))
    model["@architectures"] = "spacy_rnn_ner.BiLSTMCRFTagger.v2"
    nlp.add_pipe("rnn_tagger", config={"model": model})
    train_tagger(nlp, make_examples(nlp), n_iter=4)
    return nlp


def docs_for(nlp):
    texts = [t for t, _ in TRAIN_DATA] + ["", "ÜBER  odd\ttokens \n and 東京 😀", "x"]
    return [nlp.make_doc(t) for t in texts]


def assert_fast_equals_plain(embed, docs):
    fast = embed.predict(docs)
    plain, _ = plain_forward(embed, docs, is_train=False)
    assert [len(x) for x in fast] == [len(doc) for doc in docs]
    for a, b in zip(fast, plain):
        numpy.testing.assert_allclose(a, b, atol=1e-4)
    return fast


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_path_equals_plain_path_and_follows_every_weight_change(variant, tmp_path):
    """After training, after loading, between update and finish_update (as
    annotating_components predicts), under use_params (averages), and from
    two threads at once, the fast path gives the layer-by-layer output."""
    nlp = trained(variant)
    embed = nlp.get_pipe("rnn_tagger").model.get_ref("embed")
    docs = docs_for(nlp)
    before = assert_fast_equals_plain(embed, docs)

    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    loaded_embed = loaded.get_pipe("rnn_tagger").model.get_ref("embed")
    for a, b in zip(before, assert_fast_equals_plain(loaded_embed, docs_for(loaded))):
        numpy.testing.assert_allclose(a, b, atol=1e-5)

    optimizer = nlp.resume_training()
    tagger = nlp.get_pipe("rnn_tagger")
    examples = make_examples(nlp)
    tagger.update(examples, sgd=None)
    assert_fast_equals_plain(embed, docs)  # built between update and finish_update...
    tagger.finish_update(optimizer)  # ...then the weights change in place
    after = assert_fast_equals_plain(embed, docs)
    assert max(float(numpy.abs(a - b).max()) for a, b in zip(before, after) if len(a)) > 1e-4
    with nlp.use_params(optimizer.averages):
        assert_fast_equals_plain(embed, docs)
    assert_fast_equals_plain(embed, docs)
    # An optimizer that updates the arrays in place (same objects, new values).
    for name in ("table_0_0", "maxout"):
        node = embed.get_ref(name)
        for param in node.param_names:
            node.get_param(param)[...] += 0.05
    assert_fast_equals_plain(embed, docs)

    # A deep copy (resume_training's rehearsal model) and the original, called in turn,
    # each predict from their own weights.
    twin = copy.deepcopy(embed)
    for name in ("table_0_0", "maxout"):
        node = twin.get_ref(name)
        for param in node.param_names:
            node.get_param(param)[...] -= 0.1
    for _ in range(2):
        assert_fast_equals_plain(twin, docs)
        assert_fast_equals_plain(embed, docs)

    fresh = copy.deepcopy(nlp.get_pipe("rnn_tagger").model).get_ref("embed")
    results = [None, None]

    def predict(i):
        results[i] = fresh.predict(docs)

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    plain, _ = plain_forward(fresh, docs, is_train=False)
    for result in results:
        for a, b in zip(result, plain):
            numpy.testing.assert_allclose(a, b, atol=1e-4)


def test_the_cache_is_not_saved():
    nlp = trained("v2")
    model = nlp.get_pipe("rnn_tagger").model
    size = len(model.to_bytes())
    model.get_ref("embed").predict(docs_for(nlp))
    assert len(model.to_bytes()) == size


@pytest.mark.parametrize("n_chars", [1, 2, 7, 8, 10])
def test_utf8_rows_equal_spacys_to_utf8_array(n_chars):
    """The fast path's character rows equal spaCy's Doc.to_utf8_array, for
    multi-byte characters, words shorter and longer than the width, empty
    docs, and on a second call (from the cache)."""
    from spacy_rnn_ner.ml.fused_embed import utf8_rows

    nlp = spacy.blank("en")
    texts = ["São Paulo naïve 東京 a ab abc abcdefghijklmnop", "", "x 😀 -- U.S. Übermensch São"]
    docs = [nlp.make_doc(text) for text in texts]
    expected = numpy.concatenate([doc.to_utf8_array(nr_char=n_chars) for doc in docs if len(doc)])
    for _ in range(2):
        got = utf8_rows(docs, n_chars)
        assert got.dtype == numpy.uint8
        numpy.testing.assert_array_equal(got, expected)
    assert utf8_rows([nlp.make_doc("")], n_chars).shape == (0, n_chars)
