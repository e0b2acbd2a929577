"""Corpus readers: gold tokens and whole documents, optionally mixed with the
pipeline's own reading of the raw text."""
import random
from pathlib import Path
from typing import Callable, Iterator, List, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import registry


@registry.readers("spacy_rnn_ner.GoldTokenCorpus.v1")
def create_gold_token_corpus(
    path: Union[str, Path], limit: int = 0, shuffle: bool = False
) -> Callable[[Language], Iterator[Example]]:
    """Read a .spacy file into Examples whose predicted docs keep the gold tokens.

    spaCy's `spacy.Corpus.v1` either re-tokenises the text (and CoNLL-style
    tokens that spaCy splits differently lose their gold) or, with
    `gold_preproc`, keeps the tokens but cuts each document into sentences.
    This reader keeps both the tokens and the documents, as the CoNLL
    evaluation does, so the LSTM sees context across sentences.
    """
    return GoldTokenCorpus(path, limit=limit, shuffle=shuffle)


@registry.readers("spacy_rnn_ner.GoldTokenCorpus.v2")
def create_gold_token_corpus_v2(
    path: Union[str, Path],
    limit: int = 0,
    shuffle: bool = False,
    raw_text: float = 0.0,
    drop_sentences: float = 0.0,
) -> Callable[[Language], Iterator[Example]]:
    """As v1, but a share of the documents comes as the pipeline will read raw text.

    raw_text: the fraction of documents whose predicted doc is the pipeline's
        own tokenization of the text, with no sentence starts (gold entities
        are aligned to those tokens, as `spacy.Corpus.v1` does). List the
        sentence splitter in [training] annotating_components so that it sets
        the boundaries it will set at prediction time.
    drop_sentences: the fraction of the remaining documents that keep the
        gold tokens but lose the gold sentence starts.
    Which documents are chosen is drawn afresh at each pass over the corpus,
    from Python's `random` (seeded by spaCy's training seed).
    """
    return GoldTokenCorpus(path, limit=limit, shuffle=shuffle, raw_text=raw_text, drop_sentences=drop_sentences)


class GoldTokenCorpus:
    """Iterate Examples (reference = the gold doc; predicted = its gold tokens and
    sentence starts, or for a `raw_text` share the tokenizer's reading of the
    text, or for a `drop_sentences` share the gold tokens alone; never entities)."""

    def __init__(
        self,
        path: Union[str, Path],
        *,
        limit: int = 0,
        shuffle: bool = False,
        raw_text: float = 0.0,
        drop_sentences: float = 0.0,
    ) -> None:
        for name, value in (("raw_text", raw_text), ("drop_sentences", drop_sentences)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"[rnn_tagger] The corpus reader's {name} is a fraction of the documents, "
                    f"between 0 and 1; got {value!r}."
                )
        self.path = Path(path)
        self.limit = limit
        self.shuffle = shuffle
        self.raw_text = raw_text
        self.drop_sentences = drop_sentences

    def __call__(self, nlp: Language) -> Iterator[Example]:
        if not self.path.exists():
            raise ValueError(
                f"[rnn_tagger] Corpus file not found: {self.path}. Convert your data with "
                "`python scripts/convert.py INPUT.iob OUTPUT.spacy` and point [paths] at it."
            )
        docs: List[Doc] = list(DocBin().from_disk(self.path).get_docs(nlp.vocab))
        if self.shuffle:
            random.shuffle(docs)
        if self.limit >= 1:
            docs = docs[: self.limit]
        for reference in docs:
            if _drawn(self.raw_text):
                yield Example(nlp.make_doc(reference.text), reference)
            else:
                yield Example(_gold_token_doc(reference, not _drawn(self.drop_sentences)), reference)


def _drawn(fraction: float) -> bool:
    """True with probability `fraction`; 0 and 1 draw no random number."""
    return fraction >= 1.0 or (fraction > 0.0 and random.random() < fraction)


def _gold_token_doc(reference: Doc, sentences: bool = True) -> Doc:
    """A doc with the reference's tokens and, if asked and it has them, its sentence starts."""
    words = [token.text for token in reference]
    spaces = [bool(token.whitespace_) for token in reference]
    sent_starts = None
    if sentences and reference.has_annotation("SENT_START"):
        sent_starts = [bool(token.is_sent_start) for token in reference]
    return Doc(reference.vocab, words=words, spaces=spaces, sent_starts=sent_starts)
