"""rnn_token_tagger: the same models labelling each token (tag_, pos_ or an extension)."""
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example

from spacy_rnn_ner.data.conll import read_conll_text
from spacy_rnn_ner.pipeline.lattice import TOKEN_TAGS, TagLattice

from tests.helpers import SMALL_MODEL, train_tagger

# Written for these tests: Penn Treebank tags, with their Universal POS.
TAGGED = [
    ("The cat sat on the mat .", "DT NN VBD IN DT NN ."),
    ("A dog barked at the postman .", "DT NN VBD IN DT NN ."),
    ("Anna reads old books .", "NNP VBZ JJ NNS ."),
    ("Berlin is a big city .", "NNP VBZ DT JJ NN ."),
    ("They walked to the station quickly .", "PRP VBD TO DT NN RB ."),
    ("She quickly sold two red cars .", "PRP RB VBD CD JJ NNS ."),
    ("The old man sleeps .", "DT JJ NN VBZ ."),
    ("Paul gave Anna three apples .", "NNP VBD NNP CD NNS ."),
]
UPOS = {"DT": "DET", "NN": "NOUN", "NNS": "NOUN", "VBD": "VERB", "VBZ": "VERB", "IN": "ADP", ".": "PUNCT",
        "NNP": "PROPN", "JJ": "ADJ", "PRP": "PRON", "TO": "PART", "RB": "ADV", "CD": "NUM"}
SMALL_CRF = dict(SMALL_MODEL, **{"@architectures": "spacy_rnn_ner.BiLSTMCRFTagger.v1"})


def examples(nlp, attr="tag"):
    out = []
    for text, tags in TAGGED:
        words, tags = text.split(), tags.split()
        reference = Doc(nlp.vocab, words=words)
        for token, tag in zip(reference, tags):
            if attr == "tag":
                token.tag_ = tag
            elif attr == "pos":
                token.pos_ = UPOS[tag]
            else:
                token._.set(attr[2:], tag)
        out.append(Example(nlp.make_doc(text), reference))
    return out


def tagger_pipeline(model=SMALL_MODEL, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("rnn_token_tagger", config={"model": model, **config})
    return nlp


@pytest.mark.parametrize("model", [SMALL_MODEL, SMALL_CRF], ids=["softmax", "crf"])
def test_learns_tags_scores_tag_acc_and_round_trips(model, tmp_path):
    nlp = tagger_pipeline(model)
    train_tagger(nlp, examples(nlp), n_iter=150)
    pipe = nlp.get_pipe("rnn_token_tagger")
    assert set(pipe.labels) == {t for _, tags in TAGGED for t in tags.split()}
    assert pipe.uses_crf == (model is SMALL_CRF)
    scores = nlp.evaluate(examples(nlp))
    assert scores["tag_acc"] > 0.95 and "ents_f" not in scores
    doc = nlp("The cat sat on the mat .")
    assert [t.tag_ for t in doc] == "DT NN VBD IN DT NN .".split()
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    texts = [text for text, _ in TAGGED] + ["Paul reads two books ."]
    before = [[t.tag_ for t in d] for d in nlp.pipe(texts)]
    assert [[t.tag_ for t in d] for d in loaded.pipe(texts)] == before
    # A tag added to the trained model stays out of prediction until trained on.
    output = pipe.model.get_ref("output")
    assert pipe.add_label("UH") == 1 and output.get_dim("nO") == len(pipe.labels)
    output.get_param("b")[-1] = 1e3 if pipe.uses_crf else output.get_param("b")[-1]
    assert [[t.tag_ for t in d] for d in nlp.pipe(texts)] == before


def test_pos_target_and_its_label_check():
    nlp = tagger_pipeline(attr="pos")
    train_tagger(nlp, examples(nlp, "pos"), n_iter=150)
    assert nlp.evaluate(examples(nlp, "pos"))["pos_acc"] > 0.95
    assert [t.pos_ for t in nlp("Anna reads old books .")] == ["PROPN", "VERB", "ADJ", "NOUN", "PUNCT"]
    with pytest.raises(ValueError, match=r"rnn_token_tagger.*Invalid tag 'NNP' for attr 'pos'.*attr = \"tag\""):
        nlp.get_pipe("rnn_token_tagger").add_label("NNP")


def test_custom_extension_target_scored_under_its_name():
    nlp = tagger_pipeline(model=SMALL_CRF, attr="_.ptb")
    train_tagger(nlp, examples(nlp, "_.ptb"), n_iter=150)
    scores = nlp.evaluate(examples(nlp, "_.ptb"))
    assert scores["ptb_acc"] > 0.95
    doc = nlp("A dog barked at the postman .")
    assert [t._.ptb for t in doc] == "DT NN VBD IN DT NN .".split() and not any(t.tag_ for t in doc)


def test_initialize_from_labels_alone_and_bad_settings():
    nlp = tagger_pipeline()
    pipe = nlp.get_pipe("rnn_token_tagger")
    for tag in ("NN", "VB", "-LRB-"):
        pipe.add_label(tag)
    nlp.initialize()
    assert {t.tag_ for t in nlp("some text here")} <= {"NN", "VB", "-LRB-"}
    with pytest.raises(ValueError, match="rnn_token_tagger.*No tags.*sets token 'tag'"):
        blank = tagger_pipeline()
        blank.initialize(lambda: [Example(blank.make_doc("no tags"), blank.make_doc("no tags"))])
    with pytest.raises(ValueError, match="attr must be 'tag', 'pos' or a token extension"):
        tagger_pipeline(attr="lemma")


def test_token_tags_lattice_allows_every_transition():
    lattice = TagLattice(["NN", "B-X", "O"], TOKEN_TAGS)
    assert lattice.tags == ["NN", "B-X", "O"]
    assert lattice.allowed.all() and (lattice.start == 0).all() and (lattice.end == 0).all()


def test_converter_keeps_a_column_as_token_tags():
    text = "-DOCSTART- -X- O O\n\nEU NNP I-NP B-ORG\nrejects VBZ I-VP O\n"
    (doc,), _ = read_conll_text(text, tag_column=1)
    assert [t.tag_ for t in doc] == ["NNP", "VBZ"] and [e.label_ for e in doc.ents] == ["ORG"]
    (doc,), _ = read_conll_text(text, tag_column=2)
    assert [t.tag_ for t in doc] == ["I-NP", "I-VP"]
    with pytest.raises(ValueError, match="tag column 3 asked for.*2 column"):
        read_conll_text(text, tag_column=3)
