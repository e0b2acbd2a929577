"""Score a pipeline's entities on gold tokens, whole documents in (the CoNLL way)."""
from pathlib import Path
from typing import Dict, List, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from .corpus import GoldTokenCorpus


def gold_token_examples(nlp: Language, path: Union[str, Path], sentences: bool = True) -> List[Example]:
    """Examples from a .spacy file whose predicted docs carry the gold tokens
    (and the gold sentence starts, unless `sentences` is False: then the
    pipeline's own sentencizer, if it has one, sets them, as for raw text)."""
    examples = list(GoldTokenCorpus(path)(nlp))
    if not sentences:
        examples = [Example(_without_sentences(eg.predicted), eg.reference) for eg in examples]
    return examples


def _without_sentences(doc: Doc) -> Doc:
    return Doc(doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])


def evaluate_gold_tokens(nlp: Language, path: Union[str, Path], batch_size: int = 256, sentences: bool = True) -> Dict:
    """Entity P/R/F (overall and per type) on gold tokens, whole documents.

    `spacy evaluate` re-tokenises the text (tokens spaCy splits differently
    from the gold count as errors), and with --gold-preproc it cuts documents
    into sentences. The CoNLL standard scores the gold tokens of whole
    documents, which is what this does, for any pipeline with an entity
    recognizer (ours or spaCy's `ner`).
    """
    examples = gold_token_examples(nlp, path, sentences=sentences)
    scores = nlp.evaluate(examples, batch_size=batch_size)
    return {
        "ents_p": scores["ents_p"],
        "ents_r": scores["ents_r"],
        "ents_f": scores["ents_f"],
        "ents_per_type": scores["ents_per_type"],
        "n_docs": len(examples),
        "n_words": sum(len(eg.reference) for eg in examples),
    }
