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


def _hyphen_corpus(tmp_path, n_docs=40):
    """Docs whose gold tokens keep '1996-08-22' and 'Bre-X' whole, which spaCy's tokenizer splits."""
    nlp = spacy.blank("en")
    words = ["Bre-X", "fell", "on", "1996-08-22", ".", "Its", "shares", "fell", "."]
    docs = [
        Doc(nlp.vocab, words=words, sent_starts=[True] + [False] * 4 + [True] + [False] * 3,
            ents=["B-ORG", "O", "O", "O", "O", "O", "O", "O", "O"])
        for _ in range(n_docs)
    ]
    DocBin(docs=docs).to_disk(tmp_path / "h.spacy")
    return nlp, tmp_path / "h.spacy", words


def test_v2_raw_text_share_reads_the_text_with_the_pipelines_tokenizer(tmp_path):
    import random
    from spacy_rnn_ner.data.corpus import create_gold_token_corpus_v2

    nlp, path, words = _hyphen_corpus(tmp_path)
    random.seed(0)
    examples = list(create_gold_token_corpus_v2(path, raw_text=0.5)(nlp))
    raw = [eg for eg in examples if [t.text for t in eg.predicted] != words]
    gold = [eg for eg in examples if [t.text for t in eg.predicted] == words]
    assert 5 <= len(raw) <= 35 and len(raw) + len(gold) == 40
    for eg in raw:
        # The tokenizer's own reading: 'Bre-X' split, no sentence starts (the
        # pipeline's sentence splitter sets them), the gold entity aligned to it.
        assert [t.text for t in eg.predicted] == [t.text for t in nlp.make_doc(eg.reference.text)]
        assert not eg.predicted.has_annotation("SENT_START")
        aligned = eg.get_aligned_ner()
        assert aligned[:3] == ["B-ORG", "I-ORG", "L-ORG"] and set(aligned[3:]) == {"O"}
    for eg in gold:
        assert [s.start for s in eg.predicted.sents] == [0, 5]
    # Drawn afresh at each pass over the corpus.
    again = list(create_gold_token_corpus_v2(path, raw_text=0.5)(nlp))
    assert [len(eg.predicted) for eg in again] != [len(eg.predicted) for eg in examples]


def test_v2_drop_sentences_keeps_tokens_and_v1_is_unchanged(tmp_path):
    from spacy.util import registry

    nlp, path, words = _hyphen_corpus(tmp_path, n_docs=3)
    dropped = list(registry.readers.get("spacy_rnn_ner.GoldTokenCorpus.v2")(path, drop_sentences=1.0)(nlp))
    assert all([t.text for t in eg.predicted] == words for eg in dropped)
    assert not any(eg.predicted.has_annotation("SENT_START") for eg in dropped)
    kept = list(registry.readers.get("spacy_rnn_ner.GoldTokenCorpus.v1")(path)(nlp))
    assert all([s.start for s in eg.predicted.sents] == [0, 5] for eg in kept)
    with pytest.raises(ValueError, match="raw_text is a fraction"):
        registry.readers.get("spacy_rnn_ner.GoldTokenCorpus.v2")(path, raw_text=1.5)
