"""The gold-token corpus reader keeps tokens, documents and sentence starts."""
from spacy.tokens import Doc, DocBin
import spacy
import pytest

from spacy_rnn_ner.data.corpus import GoldTokenCorpus


def test_reader_keeps_gold_tokens_sentences_and_no_entities(tmp_path):
    nlp = spacy.blank("en")
    words = ["U.S.", "Open", "starts", ".", "Tomas", "Berg", "won", "."]
    gold = Doc(nlp.vocab, words=words, sent_starts=[True, False, False, False, True, False, False, False],
               ents=["B-MISC", "I-MISC", "O", "O", "B-PER", "I-PER", "O", "O"])
    DocBin(docs=[gold]).to_disk(tmp_path / "c.spacy")
    (eg,) = list(GoldTokenCorpus(tmp_path / "c.spacy")(nlp))
    assert [t.text for t in eg.predicted] == words
    assert [s.start for s in eg.predicted.sents] == [0, 4]
    assert not eg.predicted.ents and not eg.predicted.has_annotation("ENT_IOB")
    assert [(e.text, e.label_) for e in eg.reference.ents] == [("U.S. Open", "MISC"), ("Tomas Berg", "PER")]


def test_missing_corpus_file_is_explained(tmp_path):
    with pytest.raises(ValueError, match="Corpus file not found.*convert"):
        list(GoldTokenCorpus(tmp_path / "nope.spacy")(spacy.blank("en")))


def test_evaluation_can_drop_gold_sentences_for_the_pipelines_sentencizer(tmp_path):
    from spacy_rnn_ner.scoring import gold_token_examples

    nlp = spacy.blank("en")
    words = ["Freiburg", "3", "Hamburg", "1", "Bochum", "won", "."]
    gold = Doc(nlp.vocab, words=words, sent_starts=[True, False, True, False, True, False, False])
    DocBin(docs=[gold]).to_disk(tmp_path / "c.spacy")
    (kept,) = gold_token_examples(nlp, tmp_path / "c.spacy")
    (dropped,) = gold_token_examples(nlp, tmp_path / "c.spacy", sentences=False)
    assert [s.start for s in kept.predicted.sents] == [0, 2, 4]
    assert not dropped.predicted.has_annotation("SENT_START")
    assert [t.text for t in dropped.predicted] == words
    # With overwrite = false (the default config), a sentencizer keeps the corpus's starts.
    senter = nlp.add_pipe("sentencizer", config={"overwrite": False})
    assert [s.start for s in senter(kept.predicted).sents] == [0, 2, 4]
    assert [s.start for s in senter(dropped.predicted).sents] == [0]
