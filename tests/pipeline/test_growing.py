"""Initializing from labels alone, adding a type to a trained pipeline, rehearsal."""
import numpy
import pytest
import spacy
from thinc.api import Config

from tests.helpers import SMALL_MODEL, TRAIN_DATA, blank_with_tagger, make_examples, train_tagger

CRF_MODEL = dict(SMALL_MODEL, **{"@architectures": "spacy_rnn_ner.BiLSTMCRFTagger.v2"})
NEW_TYPE = [
    ("Angela Moreau drove a Volvo XC90 to Lyon .", [(0, 13, "PER"), (22, 32, "PRODUCT"), (36, 40, "LOC")]),
    ("The Volvo XC90 and the Siemens S7 sold well .", [(4, 14, "PRODUCT"), (23, 33, "PRODUCT")]),
    ("Tomas Berg bought a Siemens S7 .", [(0, 10, "PER"), (20, 30, "PRODUCT")]),
]


def test_initialize_from_labels_alone_with_add_label_or_the_config():
    nlp = blank_with_tagger()
    tagger = nlp.get_pipe("rnn_tagger")
    for label in ("PER", "LOC"):
        tagger.add_label(label)
    nlp.initialize()
    assert tagger.labels == ("PER", "LOC")
    assert tagger.model.get_ref("output").get_dim("nO") == 9
    doc = nlp("Angela Moreau flew to Lyon .")
    assert len(doc.spans["rnn_tagger"].attrs["scores"]) == len(doc.spans["rnn_tagger"])

    config = Config().from_str(nlp.config.to_str())
    # The format `spacy init labels` writes, read back by spaCy's own reader.
    config["initialize"]["components"] = {"rnn_tagger": {"labels": ["ORG", "MISC"]}}
    assembled = spacy.util.load_model_from_config(config, auto_fill=True)
    assembled.initialize()
    assert assembled.get_pipe("rnn_tagger").labels == ("ORG", "MISC")


def test_initialize_without_labels_or_annotation_explains_both_ways_out():
    nlp = blank_with_tagger()
    with pytest.raises(ValueError, match=r"\[rnn_tagger\] No labels.*add_label.*initialize.components.rnn_tagger.labels"):
        nlp.initialize()


def test_without_examples_the_known_word_list_falls_back_to_every_word_its_own_vector():
    nlp = blank_with_tagger(model=dict(CRF_MODEL, embed={
        "@architectures": "spacy_rnn_ner.FeatureEmbed.v2", "width": 16, "attrs": ["NORM", "SHAPE"],
        "rows": [300, 50], "use_clusters": False, "char_width": 4, "n_chars": 4,
    }))
    nlp.get_pipe("rnn_tagger").add_label("PER")
    nlp.initialize()
    known = nlp.get_pipe("rnn_tagger").model.get_ref("embed").get_ref("known_words")
    assert len(known.attrs["known_words"]) == 0
    ids = [numpy.array([[11, 1], [12, 1]], dtype="uint64")]
    assert numpy.array_equal(known.predict(ids)[0], ids[0])  # no word mapped to "unknown"


@pytest.mark.parametrize("model", [SMALL_MODEL, CRF_MODEL], ids=["softmax", "crf"])
def test_add_label_to_a_trained_pipeline_keeps_the_old_predictions_then_learns_it(model, tmp_path):
    nlp = blank_with_tagger(model=model)
    train_tagger(nlp, make_examples(nlp), n_iter=80)
    tagger = nlp.get_pipe("rnn_tagger")
    texts = [text for text, _ in TRAIN_DATA] + [text for text, _ in NEW_TYPE]
    before = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    n_tags = len(tagger.tags)
    W = tagger.model.get_ref("output").get_param("W").copy()
    nlp.resume_training()  # keeps a copy of the trained model to rehearse
    assert tagger.add_label("PRODUCT") == 1
    assert len(tagger.tags) == tagger.model.get_ref("output").get_dim("nO") > n_tags
    assert numpy.array_equal(tagger.model.get_ref("output").get_param("W")[:n_tags], W)
    if tagger.uses_crf:
        assert tagger.model.get_ref("crf").get_param("T").shape == (len(tagger.tags),) * 2
    assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)] == before
    assert tagger.cfg["unseen_labels"] == ["PRODUCT"]
    nlp.to_disk(tmp_path / "grown")  # the new label stays out of decoding after a reload too
    reloaded = spacy.load(tmp_path / "grown")
    assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in reloaded.pipe(texts)] == before

    optimizer = nlp.create_optimizer()  # fresh state, shaped like the grown weights
    new = make_examples(nlp, NEW_TYPE)
    old = make_examples(nlp)
    nlp.update(old, sgd=optimizer)
    assert tagger.cfg["unseen_labels"] == ["PRODUCT"]  # no PRODUCT in the gold yet
    for _ in range(80):
        nlp.update(new, sgd=optimizer)
        nlp.rehearse(old, sgd=optimizer)
    assert tagger.cfg["unseen_labels"] == []
    assert nlp.evaluate(new)["ents_per_type"]["PRODUCT"]["f"] == 1.0
    if tagger.uses_crf:  # the default; with softmax, rehearsal keeps much less (see the session note)
        assert nlp.evaluate(old)["ents_f"] > 0.9  # rehearsal kept the old types


@pytest.mark.parametrize("model", [SMALL_MODEL, CRF_MODEL], ids=["softmax", "crf"])
def test_rehearsal_keeps_the_old_tag_distributions_that_update_alone_moves(model):
    base = blank_with_tagger(model=model)
    train_tagger(base, make_examples(base), n_iter=80)
    docs = [base.make_doc(text) for text, _ in TRAIN_DATA]
    tagger = base.get_pipe("rnn_tagger")
    n_old = len(tagger.tags)
    before = [tagger._tag_distribution(s) for s in tagger.model.predict(docs)]
    drift = {}
    for rehearse in (False, True):
        nlp = blank_with_tagger(model=model)
        nlp.from_bytes(base.to_bytes())
        nlp.resume_training()
        grown = nlp.get_pipe("rnn_tagger")
        grown.add_label("PRODUCT")
        optimizer = nlp.create_optimizer()
        new, old = make_examples(nlp, NEW_TYPE), make_examples(nlp)
        for _ in range(60):
            nlp.update(new, sgd=optimizer)
            if rehearse:
                nlp.rehearse(old, sgd=optimizer)
        after = [grown._tag_distribution(s[:, :n_old]) for s in grown.model.predict(docs)]
        # Mean total variation distance per token, over the old tags.
        drift[rehearse] = numpy.mean(numpy.concatenate([0.5 * abs(a - b).sum(axis=1) for a, b in zip(after, before)]))
    # Updating on the new type's three sentences alone moves the old text's
    # tag distributions; rehearsing on the old text holds them near the kept model's.
    assert drift[True] < 0.5 * drift[False]


def test_rehearse_reaches_the_lstm_through_spacys_gradient_collection():
    # Language.rehearse collects each component's gradients, then runs the
    # optimizer; the torch LSTM's must survive until then.
    nlp = blank_with_tagger(model=CRF_MODEL)
    train_tagger(nlp, make_examples(nlp), n_iter=10)
    nlp.resume_training()
    lstm = next(node for node in nlp.get_pipe("rnn_tagger").model.walk() if node.shims).shims[0]._model
    nlp.update(make_examples(nlp), sgd=nlp.create_optimizer())  # now differs from the kept model
    before = {name: p.detach().clone() for name, p in lstm.named_parameters()}
    nlp.rehearse(make_examples(nlp), sgd=nlp.create_optimizer())  # fresh optimizer: no momentum to move on
    moved = max(float((p.detach() - before[name]).abs().max()) for name, p in lstm.named_parameters())
    assert moved > 1e-4


def test_rehearse_needs_resume_training_then_returns_a_loss(trained_nlp):
    nlp = blank_with_tagger()
    train_tagger(nlp, make_examples(nlp), n_iter=10)
    examples = make_examples(nlp)
    assert nlp.rehearse(examples) == {"rnn_tagger": 0.0}  # no rehearsal model yet: nothing to keep
    optimizer = nlp.resume_training()
    nlp.update(examples, sgd=optimizer)
    losses = nlp.rehearse(examples, sgd=optimizer)
    assert losses["rnn_tagger"] > 0
