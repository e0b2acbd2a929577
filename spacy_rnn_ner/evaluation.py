"""Score a pipeline's entities on gold tokens, whole documents in (the CoNLL way)."""
from pathlib import Path
from typing import Dict, List, Union

from spacy.language import Language
from spacy.training import Example

from .corpus import GoldTokenCorpus


def gold_token_examples(nlp: Language, path: Union[str, Path]) -> List[Example]:
    """Examples from a .spacy file whose predicted docs carry the gold tokens."""
    return list(GoldTokenCorpus(path)(nlp))


def evaluate_gold_tokens(nlp: Language, path: Union[str, Path], batch_size: int = 256) -> Dict:
    """Entity P/R/F (overall and per type) on gold tokens, whole documents.

    `spacy evaluate` re-tokenises the text (tokens spaCy splits differently
    from the gold count as errors), and with --gold-preproc it cuts documents
    into sentences. The CoNLL standard scores the gold tokens of whole
    documents, which is what this does, for any pipeline with an entity
    recognizer (ours or spaCy's `ner`).
    """
    examples = gold_token_examples(nlp, path)
    scores = nlp.evaluate(examples, batch_size=batch_size)
    return {
        "ents_p": scores["ents_p"],
        "ents_r": scores["ents_r"],
        "ents_f": scores["ents_f"],
        "ents_per_type": scores["ents_per_type"],
        "n_docs": len(examples),
        "n_words": sum(len(eg.reference) for eg in examples),
    }
