"""A corpus reader that keeps the gold tokens and whole documents."""
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


class GoldTokenCorpus:
    """Iterate Examples (predicted = gold tokens and sentence starts, no entities; reference = gold doc)."""

    def __init__(self, path: Union[str, Path], *, limit: int = 0, shuffle: bool = False) -> None:
        self.path = Path(path)
        self.limit = limit
        self.shuffle = shuffle

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
            words = [token.text for token in reference]
            spaces = [bool(token.whitespace_) for token in reference]
            # Gold sentence boundaries come with the gold tokens (CoNLL gives
            # both); the model's "sentence" context needs them.
            sent_starts = None
            if reference.has_annotation("SENT_START"):
                sent_starts = [bool(token.is_sent_start) for token in reference]
            yield Example(Doc(nlp.vocab, words=words, spaces=spaces, sent_starts=sent_starts), reference)
