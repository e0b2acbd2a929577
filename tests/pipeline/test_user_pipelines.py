"""rnn_tagger the way users meet it: their own labels, an entity_ruler before
it, whitespace in raw text, load-time config overrides, foreign vocabs."""
import json

import pytest
import spacy
from spacy.tokens import Doc

from spacy_rnn_ner.annotate import annotate
from spacy_rnn_ner.data.conll import read_conll_text
from spacy_rnn_ner.pipeline.rnn_tagger import save_with_settings

from tests.helpers import TRAIN_DATA, blank_with_tagger, make_examples, train_tagger

# Labels that spaCy's ner takes: separators, tag-like prefixes, spaces, unicode, case, one character.
ODD_LABELS = {"PER": "creative-work", "LOC": "B-thing", "ORG": "a b", "MISC": "ünï_x"}
ODD_DATA = [
    (text, [(a, b, ODD_LABELS[label]) for a, b, label in ents]) for text, ents in TRAIN_DATA
] + [("Zed met x at noon .", [(0, 3, "per"), (8, 9, "X")])]


@pytest.fixture(scope="module")
def odd_nlp():
    nlp = blank_with_tagger()
    # The one sentence with the two extra labels, three times, so that a small model learns it.
    train_tagger(nlp, make_examples(nlp, ODD_DATA + ODD_DATA[-1:] * 2), n_iter=120)
    return nlp


def test_odd_labels_train_like_spacys_ner_and_come_back_exactly(odd_nlp, tmp_path):
    ner_nlp = spacy.blank("en")
    ner_nlp.add_pipe("ner")
    train_tagger(ner_nlp, make_examples(ner_nlp, ODD_DATA), n_iter=5)
    ours = odd_nlp.get_pipe("rnn_tagger")
    assert set(ours.labels) == set(ner_nlp.get_pipe("ner").labels) == {l for _, ents in ODD_DATA for *_, l in ents}
    odd_nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("rnn_tagger").labels == ours.labels
    examples = make_examples(loaded, ODD_DATA)
    scores = loaded.evaluate(examples)
    assert scores["ents_f"] > 0.9 and set(scores["ents_per_type"]) == set(ours.labels)
    predicted = {e.label_ for text, _ in ODD_DATA for e in loaded(text).ents}
    assert predicted <= set(ours.labels) and len(predicted) >= len(ours.labels) - 1
    for text, _ in ODD_DATA:
        doc = loaded(text)
        assert [(s.start, s.end, s.label_) for s in doc.spans["rnn_tagger"] if s in doc.ents] == [
            (e.start, e.end, e.label_) for e in doc.ents
        ]


def test_odd_labels_pass_through_the_converter_and_annotate(odd_nlp, tmp_path):
    docs, _ = read_conll_text("Lyon B-B-thing\nfell O\nx B-creative-work\ny I-creative-work\n", "en", scheme="iob2")
    assert [(e.text, e.label_) for e in docs[0].ents] == [("Lyon", "B-thing"), ("x y", "creative-work")]
    odd_nlp.to_disk(tmp_path / "p")
    src = tmp_path / "in.txt"
    src.write_text("\n".join(text for text, _ in ODD_DATA) + "\n", encoding="utf8")
    annotate(tmp_path / "p", src, tmp_path / "out.jsonl", progress=False)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf8").splitlines()]
    loaded = spacy.load(tmp_path / "p")
    expected = [[(e.start_char, e.end_char, e.label_) for e in loaded(text).ents] for text, _ in ODD_DATA]
    assert [[(e["start"], e["end"], e["label"]) for e in r["ents"]] for r in records] == expected
    assert {label for ents in expected for *_, label in ents} & {"creative-work", "B-thing", "a b", "ünï_x"}


def test_entity_ruler_entities_are_kept_and_the_rest_is_tagged(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path / "p")
    text = "Angela Moreau flew from Lyon to New York City on Monday ."
    alone = [(e.text, e.label_) for e in spacy.load(tmp_path / "p")(text).ents]
    assert ("Angela Moreau", "PER") in alone and ("Lyon", "LOC") in alone
    for overwrite in (False, True):
        nlp = spacy.load(tmp_path / "p", config={"components": {"rnn_tagger": {"overwrite_ents": overwrite}}})
        ruler = nlp.add_pipe("entity_ruler", before="rnn_tagger")
        # A phrase the model labels PER, a label the model does not know, and
        # a preset span that cuts the model's own "New York City".
        ruler.add_patterns([
            {"label": "ORG", "pattern": "Angela Moreau"},
            {"label": "DAY", "pattern": "Monday"},
            {"label": "GPE", "pattern": "York City"},
        ])
        doc = nlp(text)
        ents = [(e.text, e.label_) for e in doc.ents]
        starts = [e.start for e in doc.ents]
        assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(doc.ents, doc.ents[1:]))
        if overwrite:
            assert ents == alone
        else:
            for kept in [("Angela Moreau", "ORG"), ("York City", "GPE"), ("Monday", "DAY"), ("Lyon", "LOC")]:
                assert kept in ents
            # The tagger's own spans never overlap the preset ones.
            preset = {(e.start, e.end) for e in doc.ents if e.label_ in ("ORG", "DAY", "GPE")}
            for span in doc.spans["rnn_tagger"]:
                assert not any(span.start < b and a < span.end for a, b in preset)
    assert "doc.spans" in nlp.get_pipe_meta("rnn_tagger").assigns


def test_whitespace_tokens_never_start_end_or_make_an_entity(trained_nlp):
    text = "  \n\n Angela   Moreau \n flew from \n\n Lyon  \n to  New York City \t.\n"
    doc = trained_nlp(text)
    assert doc.ents
    for ent in list(doc.ents) + list(doc.spans["rnn_tagger"]):
        assert not ent[0].is_space and not ent[-1].is_space
        assert ent.text == ent.text.strip()


def test_load_time_config_overrides_win_over_the_saved_cfg(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path / "p")
    text = "Angela Moreau flew from Lyon to Frankfurt ."
    base = spacy.load(tmp_path / "p")(text)
    scores = [float(s) for s in base.spans["rnn_tagger"].attrs["scores"]]
    cut = sorted(scores)[len(scores) // 2] + 1e-6
    nlp = spacy.load(tmp_path / "p", config={"components": {"rnn_tagger": {"threshold": cut, "temperature": 2.0}}})
    tagger = nlp.get_pipe("rnn_tagger")
    assert tagger.cfg["threshold"] == cut and tagger.cfg["temperature"] == 2.0
    assert nlp.config["components"]["rnn_tagger"]["threshold"] == cut
    doc = nlp(text)
    assert [s.text for s in doc.spans["rnn_tagger"]] == [s.text for s in base.spans["rnn_tagger"]]
    assert len(doc.ents) < len(base.ents)  # the override's threshold applies
    assert [float(s) for s in doc.spans["rnn_tagger"].attrs["scores"]] != scores  # and its temperature


def test_settings_changed_after_training_are_saved_in_the_config(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path / "p")
    save_with_settings(tmp_path / "p", tmp_path / "calibrated", "rnn_tagger", {"temperature": 1.7})
    assert "temperature = 1.7" in (tmp_path / "calibrated" / "config.cfg").read_text()
    assert spacy.load(tmp_path / "calibrated").get_pipe("rnn_tagger").cfg["temperature"] == 1.7


def test_edited_cfg_is_refused_at_load(trained_nlp, tmp_path):
    path = tmp_path / "p"
    trained_nlp.to_disk(path)
    cfg_file = path / "rnn_tagger" / "cfg"
    cfg = json.loads(cfg_file.read_text())
    for edit in ("reorder", "drop", "scheme"):
        edited = dict(cfg)
        if edit == "reorder":
            edited["labels"] = list(reversed(cfg["labels"]))
        elif edit == "drop":
            edited["labels"] = cfg["labels"][:-1]
        else:
            edited["scheme"] = "BIO"
        cfg_file.write_text(json.dumps(edited))
        with pytest.raises(ValueError, match=r"\[rnn_tagger\] Could not load.*(checksum|scheme)"):
            spacy.load(path)
    cfg_file.write_text(json.dumps(cfg))
    assert spacy.load(path)("Angela Moreau flew to Lyon .").ents


def test_a_doc_from_a_foreign_vocab_gets_a_clear_error(trained_nlp):
    from spacy.vocab import Vocab

    bare = Doc(Vocab(), words=["Angela", "Moreau", "flew", "to", "Lyon", "."])
    with pytest.raises(ValueError, match=r"\[rnn_tagger\].*vocab.*nlp.make_doc"):
        trained_nlp(bare)
    same_language = Doc(spacy.blank("en").vocab, words=["Angela", "Moreau", "flew", "to", "Lyon", "."])
    assert [e.text for e in trained_nlp(same_language).ents] == [e.text for e in trained_nlp("Angela Moreau flew to Lyon .").ents]
