"""The rnn_tagger component: labels, training, scoring, serialization, averaging."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
import torch
from thinc.api import Adam

from tests.helpers import TRAIN_DATA, blank_with_tagger, make_examples, train_tagger

TEXTS = [text for text, _ in TRAIN_DATA]


def ents_of(doc):
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def test_overfits_to_perfect_f1(trained_nlp):
    scores = trained_nlp.evaluate(make_examples(trained_nlp))
    assert scores["ents_f"] == 1.0
    assert set(scores["ents_per_type"]) == {"PER", "ORG", "LOC", "MISC"}
    for text, gold in TRAIN_DATA:
        assert sorted(ents_of(trained_nlp(text))) == sorted(gold)


def test_pipe_equals_call(trained_nlp):
    texts = TEXTS + ["", "Paris", "  ", "[PER x]"]
    piped = list(trained_nlp.pipe(texts, batch_size=3))
    for text, doc in zip(texts, piped):
        assert ents_of(doc) == ents_of(trained_nlp(text))


def test_disk_round_trip_gives_identical_predictions(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("rnn_tagger").labels == trained_nlp.get_pipe("rnn_tagger").labels
    tagger, loaded_tagger = trained_nlp.get_pipe("rnn_tagger"), loaded.get_pipe("rnn_tagger")
    docs_a = [trained_nlp.make_doc(t) for t in TEXTS]
    docs_b = [loaded.make_doc(t) for t in TEXTS]
    for a, b in zip(tagger.model.predict(docs_a), loaded_tagger.model.predict(docs_b)):
        numpy.testing.assert_array_equal(a, b)
    for text in TEXTS:
        assert ents_of(loaded(text)) == ents_of(trained_nlp(text))


def test_bytes_round_trip(trained_nlp):
    tagger = trained_nlp.get_pipe("rnn_tagger")
    nlp2 = blank_with_tagger()
    nlp2.get_pipe("rnn_tagger").from_bytes(tagger.to_bytes())
    for text in TEXTS:
        assert ents_of(nlp2(text)) == ents_of(trained_nlp(text))


def test_bio_scheme_trains_too():
    nlp = blank_with_tagger(scheme="BIO")
    tagger = nlp.get_pipe("rnn_tagger")
    train_tagger(nlp, make_examples(nlp))
    assert tagger.tags[:3] == ["O", "B-LOC", "I-LOC"]
    assert nlp.evaluate(make_examples(nlp))["ents_f"] == 1.0


def test_labels_from_initialize_argument_and_label_data():
    nlp = blank_with_tagger()
    examples = make_examples(nlp)
    tagger = nlp.get_pipe("rnn_tagger")
    tagger.initialize(lambda: examples, nlp=nlp, labels=["PER", "ORG", "LOC", "MISC", "EVENT"])
    assert tagger.labels == ("PER", "ORG", "LOC", "MISC", "EVENT")
    assert tagger.label_data == ["PER", "ORG", "LOC", "MISC", "EVENT"]
    assert tagger.model.get_ref("output").get_dim("nO") == 1 + 4 * 5


def test_labels_from_config_initialize_block():
    config = spacy.blank("en").config
    nlp = blank_with_tagger()
    config = nlp.config.copy()
    config["initialize"]["components"] = {"rnn_tagger": {"labels": ["ORG", "PER"]}}
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("rnn_tagger").labels == ("ORG", "PER")


def test_add_label_before_and_after_initialize():
    nlp = blank_with_tagger()
    tagger = nlp.get_pipe("rnn_tagger")
    assert tagger.add_label("PRODUCT") == 1
    assert tagger.add_label("PRODUCT") == 0
    assert tagger.add_label("B-X") == 1  # spaCy's ner takes it too
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match=r"\[rnn_tagger\] Invalid entity label.*non-empty string"):
            tagger.add_label(bad)
    nlp.initialize(lambda: make_examples(nlp))
    assert "PRODUCT" in tagger.labels and "PER" in tagger.labels
    assert tagger.add_label("NEW") == 1  # a trained component grows (tests/pipeline/test_growing.py)
    assert tagger.labels[-1] == "NEW" and tagger.model.get_ref("output").get_dim("nO") == len(tagger.tags)


def test_missing_and_misaligned_gold_add_no_loss():
    nlp = blank_with_tagger()
    nlp.initialize(lambda: make_examples(nlp))
    tagger = nlp.get_pipe("rnn_tagger")
    words = ["Ann", "Lee", "visited", "Oslo", "."]
    predicted = Doc(nlp.vocab, words=words)
    # The last two tokens are unannotated.
    reference = Doc(nlp.vocab, words=words, ents=["B-PER", "O", "O", None, None])
    eg = Example(predicted, reference)
    gold = tagger.gold_tags(eg)
    assert gold[3] is None and gold[4] is None
    scores = tagger.model.predict([predicted])
    _, d_scores = tagger.get_loss([eg], scores)
    assert numpy.abs(d_scores[0][3:]).sum() == 0
    assert numpy.abs(d_scores[0][:3]).sum() > 0
    misaligned = Example.from_dict(
        Doc(nlp.vocab, words=["AnnLee", "left"]), {"entities": [(0, 3, "PER")]}
    )
    assert tagger.gold_tags(misaligned)[0] is None
    _, d_mis = tagger.get_loss([misaligned], tagger.model.predict([misaligned.predicted]))
    assert numpy.abs(d_mis[0][0]).sum() == 0


def test_partially_annotated_docs_train():
    nlp = blank_with_tagger()
    examples = make_examples(nlp)
    partial = []
    for eg in examples:
        tags = ["O" if t.ent_iob_ == "O" else f"{t.ent_iob_}-{t.ent_type_}" for t in eg.reference]
        tags[-1] = None  # drop the gold for the final token
        partial.append(Example(eg.predicted, Doc(nlp.vocab, words=[t.text for t in eg.reference], ents=tags)))
    train_tagger(nlp, partial)
    assert nlp.evaluate(make_examples(nlp))["ents_f"] > 0.9


def test_scorer_and_score_weights_follow_ner():
    nlp = blank_with_tagger()
    weights = nlp.config["training"]["score_weights"]
    assert weights["ents_f"] == 1.0 and weights["ents_p"] == 0.0 and weights["ents_r"] == 0.0
    assert nlp.get_pipe_meta("rnn_tagger").assigns == ["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"]
    assert nlp.config["components"]["rnn_tagger"]["scorer"] == {"@scorers": "spacy.ner_scorer.v1"}


def test_training_under_averaged_params_saves_lstm_averages(tmp_path):
    """spaCy saves under optimizer.averages: the torch weights must be averaged too."""
    nlp = blank_with_tagger()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.001, use_averages=True)
    for _ in range(15):
        nlp.update(examples, sgd=optimizer)
    assert optimizer.averages is not None
    tagger = nlp.get_pipe("rnn_tagger")
    shim = tagger.model.get_ref("encoder").shims[0]
    raw = {k: v.detach().clone() for k, v in shim._model.state_dict().items()}
    name = "lstm.weight_hh_l0"
    averaged = optimizer.averages[(shim.id, name)]
    assert not numpy.allclose(raw[name].numpy(), averaged)
    with nlp.use_params(optimizer.averages):
        inside = shim._model.state_dict()[name].clone()
        nlp.to_disk(tmp_path / "avg")
    numpy.testing.assert_allclose(inside.numpy(), averaged, rtol=1e-6)
    # Leaving the context restores the raw weights.
    numpy.testing.assert_array_equal(shim._model.state_dict()[name].numpy(), raw[name].numpy())
    saved = spacy.load(tmp_path / "avg").get_pipe("rnn_tagger").model.get_ref("encoder").shims[0]
    numpy.testing.assert_allclose(saved._model.state_dict()[name].numpy(), averaged, rtol=1e-6)
    # The thinc output layer is averaged as well, so saved weights are one consistent set.
    out = tagger.model.get_ref("output")
    saved_out = spacy.load(tmp_path / "avg").get_pipe("rnn_tagger").model.get_ref("output")
    numpy.testing.assert_allclose(saved_out.get_param("W"), optimizer.averages[(out.id, "W")], rtol=1e-6)


def test_int8_inference_uses_a_quantized_lstm_that_follows_training():
    from spacy_rnn_ner.ml.bilstm import AveragingPyTorchShim

    from tests.helpers import blank_with_tagger, make_examples, train_tagger

    nlp = blank_with_tagger(int8_inference=True)
    examples = make_examples(nlp)
    optimizer = train_tagger(nlp, examples)
    shim = next(s for n in nlp.get_pipe("rnn_tagger").model.walk() for s in n.shims if isinstance(s, AveragingPyTorchShim))
    assert shim.int8
    int8_f = nlp.evaluate(examples)["ents_f"]
    first = shim._int8_model
    assert first is not None and type(first.lstm) is not torch.nn.LSTM  # quantized
    shim.int8 = False
    # A 32-wide toy model loses more to int8 than the CoNLL-2003 model (+0.03 F1, BENCHMARKS.md),
    # but it must still find most entities.
    assert nlp.evaluate(examples)["ents_f"] == 1.0 and int8_f > 0.5
    shim.int8 = True
    nlp.update(examples, sgd=optimizer)
    nlp("Angela Moreau flew to Lyon .")
    assert shim._int8_model is not first  # rebuilt after the weights changed


def test_word_batches_keep_order_and_the_word_limit():
    from spacy_rnn_ner.pipeline.labeller import word_batches

    nlp = spacy.blank("en")
    docs = [nlp.make_doc(" ".join(["w"] * n)) for n in (3, 4, 2, 9, 1, 1)]
    parts = list(word_batches(docs, 6))
    assert [[len(d) for d in part] for part in parts] == [[3], [4, 2], [9], [1, 1]]
    assert [d for part in parts for d in part] == docs


def test_pipe_in_parts_of_a_few_words_equals_one_forward_pass(trained_nlp, monkeypatch):
    texts = [text for text, _ in TRAIN_DATA] * 3
    tagger = trained_nlp.get_pipe("rnn_tagger")

    def annotations(batch_words):
        monkeypatch.setattr(tagger, "batch_words", batch_words)
        docs = list(trained_nlp.pipe(texts, batch_size=1000))
        return [
            ([(e.start, e.end, e.label_) for e in doc.ents], doc.spans[tagger.cfg["spans_key"]].attrs["scores"].tolist())
            for doc in docs
        ]

    whole = annotations(10**9)
    parts = annotations(12)
    assert [ents for ents, _ in parts] == [ents for ents, _ in whole]
    assert any(ents for ents, _ in whole)
    for (_, a), (_, b) in zip(parts, whole):
        numpy.testing.assert_allclose(a, b, atol=1e-5)


def test_gold_tags_of_identical_tokens_equal_spacys_alignment():
    """Fast path: where the predicted doc has the reference's tokens, the
    gold tags are read off the reference's arrays; they must equal spaCy's
    Example.get_aligned_ner, with multi-token, single-token and adjacent
    entities, whitespace tokens, tokens marked outside and tokens without
    annotation."""
    from spacy.tokens import Span

    from spacy_rnn_ner.pipeline.rnn_tagger import _same_tokens_ner

    nlp = spacy.blank("en")
    words = ["Ann", "Lee", "met", "Bo", " ", "in", "New", "York", "City", "Oslo", "today", "."]
    spaces = [True, True, True, False, False, True, True, True, False, True, False, False]
    reference = Doc(nlp.vocab, words=words, spaces=spaces)
    reference.set_ents(
        [Span(reference, 0, 2, "PER"), Span(reference, 3, 4, "PER"), Span(reference, 6, 9, "LOC"), Span(reference, 9, 10, "LOC")],
        outside=[reference[i : i + 1] for i in (2, 5)],
        default="missing",
    )
    fast = _same_tokens_ner(Doc(nlp.vocab, words=words, spaces=spaces), reference)
    expected = Example(Doc(nlp.vocab, words=words, spaces=spaces), reference).get_aligned_ner()
    assert fast == expected
    assert fast[:4] == ["B-PER", "L-PER", "O", "U-PER"] and fast[4] == "O" and fast[10] is None
    assert fast[6:10] == ["B-LOC", "I-LOC", "L-LOC", "U-LOC"]
    # Other tokens, or no annotation at all: spaCy's alignment decides (None), or nothing is known.
    assert _same_tokens_ner(nlp("Ann Lee met Bo in New York City Oslo today."), reference) is None
    unannotated = Doc(nlp.vocab, words=words, spaces=spaces)
    assert _same_tokens_ner(Doc(nlp.vocab, words=words, spaces=spaces), unannotated) == [None] * len(words)


def test_aligned_gold_cache_follows_tokens_and_annotation():
    """The cache of spaCy's alignment (docs whose tokens differ) gives what
    get_aligned_ner gives, and a change of the predicted tokens or of the
    reference's entities is a different entry, never a stale one."""
    from spacy.tokens import Span

    from spacy_rnn_ner.pipeline.rnn_tagger import _AlignedNERCache

    nlp = spacy.blank("en")
    cache = _AlignedNERCache(max_tokens=17)  # room for two of the docs below (7 and 8 tokens)
    reference = Doc(nlp.vocab, words=["Ann", "Lee", "lives", "in", "St.", "Louis", "."])
    reference.ents = [Span(reference, 0, 2, "PER"), Span(reference, 4, 6, "LOC")]
    relabelled = reference.copy()
    relabelled.ents = [Span(relabelled, 0, 2, "ORG")]
    split = Doc(nlp.vocab, words=["Ann", "Lee", "lives", "in", "St", ".", "Louis", "."])
    for predicted, gold in [(split, reference), (nlp(reference.text), reference), (split, relabelled), (split, reference)]:
        example = Example(predicted, gold)
        expected = Example(predicted, gold).get_aligned_ner()
        tags = cache.get(example)
        assert tags == expected
        tags[0] = "changed"  # the caller's copy, not the entry
        assert cache.get(example) == expected
    assert len(cache.entries) == 2 and cache.n_tokens <= 17  # the oldest entries were dropped
