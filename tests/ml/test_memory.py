"""Document memory (the v2 architectures): the averaging, its gradient, and
that a token's scores depend on the other mentions of its word in the doc."""
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import NumpyOps, fix_random_seed

from spacy_rnn_ner.ml.memory import mean_of_others, word_groups

from tests.helpers import SMALL_MODEL, blank_with_tagger, make_examples, train_tagger


def test_mean_of_others_values():
    H = numpy.arange(12, dtype="f").reshape(6, 2)
    groups = numpy.array([0, 1, 0, 2, 0, 1])
    M, _ = mean_of_others(NumpyOps(), H, groups)
    numpy.testing.assert_allclose(M[0], (H[2] + H[4]) / 2)
    numpy.testing.assert_allclose(M[1], H[5])
    numpy.testing.assert_allclose(M[3], 0.0)  # a word seen once has no memory


def test_mean_of_others_gradient_matches_finite_differences():
    rng = numpy.random.default_rng(0)
    H = rng.normal(size=(7, 3))
    groups = numpy.array([0, 1, 0, 2, 0, 1, 3])
    dM = rng.normal(size=(7, 3))
    M, backprop = mean_of_others(NumpyOps(), H, groups)
    numeric = numpy.zeros_like(H)
    eps = 1e-6
    for i in range(H.shape[0]):
        for j in range(H.shape[1]):
            shifted = H.copy()
            shifted[i, j] += eps
            numeric[i, j] = ((mean_of_others(NumpyOps(), shifted, groups)[0] - M) * dM).sum() / eps
    numpy.testing.assert_allclose(backprop(dM), numeric, atol=1e-5)


def test_word_groups_ignore_case_and_handle_empty_docs():
    vocab = spacy.blank("en").vocab
    groups = word_groups(Doc(vocab, words=["PARIS", "in", "Paris", "paris", "Lyon"]))
    assert groups[0] == groups[2] == groups[3]
    assert len({groups[0], groups[1], groups[4]}) == 3
    assert word_groups(Doc(vocab, words=[])).shape == (0,)


def _model(architecture, **extra):
    cfg = dict(SMALL_MODEL, **{"@architectures": architecture, "nO": 5, "dropout": 0.0, "context": "sentence"}, **extra)
    return registry.resolve({"model": cfg})["model"]


def _sentences(vocab, first, second):
    words = first + second
    starts = [i in (0, len(first)) for i in range(len(words))]
    return Doc(vocab, words=words, sent_starts=starts)


@pytest.mark.parametrize("architecture", ["spacy_rnn_ner.BiLSTMTagger.v2", "spacy_rnn_ner.BiLSTMCRFTagger.v2"])
def test_memory_carries_other_mentions_across_sentences(architecture):
    """With sentence context the LSTM restarts at each sentence, so only the
    memory can make 'Freiburg' in the first sentence depend on the second."""
    vocab = spacy.blank("en").vocab
    a = _sentences(vocab, ["Freiburg", "won", "."], ["Freiburg", "coach", "said", "so", "."])
    b = _sentences(vocab, ["Freiburg", "won", "."], ["Freiburg", "fans", "left", "early", "."])
    for memory, should_differ in ((True, True), (False, False)):
        fix_random_seed(0)
        model = _model(architecture, doc_memory=memory)
        model.initialize(X=[a, b])
        output = model.get_ref("output")
        output.set_param("W", numpy.random.default_rng(0).normal(0, 0.5, output.get_param("W").shape).astype("f"))
        Ya, Yb = model.predict([a, b])
        first_sentence_same = numpy.allclose(Ya[:3], Yb[:3])
        assert first_sentence_same != should_differ
        assert model.get_ref("output").get_dim("nI") == (4 if memory else 2) * SMALL_MODEL["hidden_width"]


def test_v1_architectures_do_not_take_doc_memory():
    with pytest.raises(Exception, match="doc_memory"):
        _model("spacy_rnn_ner.BiLSTMCRFTagger.v1", doc_memory=True)


def _assert_trains_and_round_trips(model_cfg, n_iter):
    nlp = blank_with_tagger(model=model_cfg)
    examples = make_examples(nlp)
    train_tagger(nlp, examples, n_iter=n_iter)
    assert nlp.evaluate(examples)["ents_f"] > 0.9
    restored = spacy.util.load_model_from_config(nlp.config, auto_fill=False)
    restored.from_bytes(nlp.to_bytes())
    text = "Angela Moreau flew from Lyon to Frankfurt . Angela Moreau met Siemens ."
    expected = [(e.text, e.label_) for e in nlp(text).ents]
    assert expected
    assert [(e.text, e.label_) for e in restored(text).ents] == expected


def test_memory_tagger_trains_and_round_trips():
    _assert_trains_and_round_trips(dict(SMALL_MODEL, **{"@architectures": "spacy_rnn_ner.BiLSTMCRFTagger.v2"}), 60)


def test_sentence_context_warns_on_long_docs_without_sentence_starts():
    vocab = spacy.blank("en").vocab
    fix_random_seed(0)
    model = _model("spacy_rnn_ner.BiLSTMCRFTagger.v2")
    words = ["Freiburg", "won", "."] * 40
    unsplit = Doc(vocab, words=words)
    split = Doc(vocab, words=words, sent_starts=[i % 3 == 0 for i in range(len(words))])
    model.initialize(X=[split])
    with pytest.warns(UserWarning, match=r"rnn_tagger.*no sentence boundaries.*sentencizer"):
        model.predict([unsplit])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict([split, Doc(vocab, words=["Short", "doc"])])


@pytest.mark.parametrize("setting,width", [("memory_lstm_width", 0), ("memory_lstm_width", 3), ("memory_conv_width", 6)])
def test_memory_encoder_passes_other_mentions_to_neighbours(setting, width):
    """'won' occurs once, so its own memory is empty: only a second encoder (a
    BiLSTM or a window Maxout) over [state, memory] lets the other mention of
    its neighbour 'Freiburg' reach it."""
    vocab = spacy.blank("en").vocab
    a = _sentences(vocab, ["Freiburg", "won", "."], ["Freiburg", "coach", "said", "so", "."])
    b = _sentences(vocab, ["Freiburg", "won", "."], ["Freiburg", "fans", "left", "early", "."])
    fix_random_seed(0)
    model = _model("spacy_rnn_ner.BiLSTMCRFTagger.v2", **{setting: width})
    model.initialize(X=[a, b])
    output = model.get_ref("output")
    extra = 2 * width if setting == "memory_lstm_width" else width
    assert output.get_dim("nI") == 4 * SMALL_MODEL["hidden_width"] + extra
    output.set_param("W", numpy.random.default_rng(0).normal(0, 0.5, output.get_param("W").shape).astype("f"))
    Ya, Yb = model.predict([a, b])
    assert numpy.allclose(Ya[1], Yb[1]) == (width == 0)


def test_memory_encoders_need_doc_memory_and_exclude_each_other():
    with pytest.raises(ValueError, match="memory_conv_width need doc_memory"):
        _model("spacy_rnn_ner.BiLSTMCRFTagger.v2", doc_memory=False, memory_conv_width=4)
    with pytest.raises(ValueError, match="not both"):
        _model("spacy_rnn_ner.BiLSTMCRFTagger.v2", memory_lstm_width=4, memory_conv_width=4)


@pytest.mark.parametrize(
    "architecture,setting",
    [
        ("spacy_rnn_ner.BiLSTMTagger.v2", "memory_lstm_width"),
        ("spacy_rnn_ner.BiLSTMCRFTagger.v2", "memory_lstm_width"),
        ("spacy_rnn_ner.BiLSTMTagger.v2", "memory_conv_width"),
        ("spacy_rnn_ner.BiLSTMCRFTagger.v2", "memory_conv_width"),
    ],
)
def test_memory_encoder_tagger_trains_and_round_trips(architecture, setting):
    # The other encoder off: the factory's default model (merged in by spaCy) sets memory_conv_width.
    widths = {"memory_lstm_width": 0, "memory_conv_width": 0, setting: 8}
    model_cfg = dict(SMALL_MODEL, **{"@architectures": architecture, "context": "sentence"}, **widths)
    _assert_trains_and_round_trips(model_cfg, 150)


def test_window_maxout_stays_inside_each_sequence_and_handles_empty_ones():
    from spacy_rnn_ner.ml.memory import WindowMaxout

    rng = numpy.random.default_rng(0)
    layer = WindowMaxout(4, 6, 1, 0.0)
    layer.initialize()
    X = rng.normal(size=(5, 4)).astype("f")
    whole = layer.predict([X])[0]
    # the row before a sequence's end sees no row beyond it: cutting the
    # sequence after row 3 changes rows 2 and 3 only where the window reaches
    cut = layer.predict([X[:3], X[3:]])
    numpy.testing.assert_allclose(cut[0][:2], whole[:2], rtol=1e-5, atol=1e-6)
    assert not numpy.allclose(cut[0][2], whole[2])
    empty = numpy.zeros((0, 4), dtype="f")
    assert [y.shape for y in layer.predict([empty, X, empty])] == [(0, 6), (5, 6), (0, 6)]
    assert [y.shape for y in layer.predict([empty])] == [(0, 6)]
    Ys, backprop = layer([empty, X], is_train=True)
    assert [d.shape for d in backprop([numpy.ones_like(Y) for Y in Ys])] == [(0, 4), (5, 4)]


def test_window_maxout_prediction_path_equals_the_training_layers():
    from spacy_rnn_ner.ml.memory import WindowMaxout

    rng = numpy.random.default_rng(1)
    layer = WindowMaxout(8, 6, 1, 0.0)
    layer.initialize()
    Xs = [rng.normal(size=(n, 8)).astype("f") for n in (5, 0, 1, 3)]
    predicted = layer.predict(Xs)
    trained, _ = layer(Xs, is_train=True)
    for a, b in zip(predicted, trained):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    numpy.testing.assert_allclose(layer.predict(Xs[:1])[0], trained[0], rtol=1e-5, atol=1e-6)


def test_window_maxout_long_inputs_take_shifted_products_with_the_same_result(monkeypatch):
    """Past WINDOW_COLUMNS_MAX_ROWS rows, prediction multiplies the rows by each
    window offset's weights and shifts the products, instead of building the
    column matrix; sequence boundaries must hold the same way."""
    import spacy_rnn_ner.ml.memory as layers

    rng = numpy.random.default_rng(4)
    layer = layers.WindowMaxout(8, 6, 1, 0.0)
    layer.initialize()
    maxout = layer.get_ref("maxout")
    maxout.set_param("b", rng.normal(size=maxout.get_param("b").shape).astype("f"))
    Xs = [rng.normal(size=(n, 8)).astype("f") for n in (5, 0, 1, 3, 7, 1)]
    expected = layer.layers[0].predict(Xs)
    monkeypatch.setattr(layers, "WINDOW_COLUMNS_MAX_ROWS", 0)
    got = layer.predict(Xs)
    for a, b in zip(got, expected):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_memory_window_predicts_empty_batches_and_empty_docs():
    vocab = spacy.blank("en").vocab
    fix_random_seed(0)
    model = _model("spacy_rnn_ner.BiLSTMCRFTagger.v2", memory_conv_width=4)
    doc = _sentences(vocab, ["Freiburg", "won", "."], ["Freiburg", "lost", "."])
    model.initialize(X=[doc])
    out = model.predict([Doc(vocab, words=[]), doc, Doc(vocab, words=[])])
    assert [len(Y) for Y in out] == [0, 6, 0]
    assert len(model.predict([Doc(vocab, words=[])])[0]) == 0
