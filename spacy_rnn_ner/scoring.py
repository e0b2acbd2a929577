"""Scoring: entity P/R/F on gold tokens with whole documents in (the CoNLL
way), and the measurements behind the evaluation report (confidence
calibration, precision/recall by threshold, a confusion table between types).

The report's functions work on (predicted doc, gold doc) pairs whose predicted
docs carry `doc.spans[spans_key]` with `attrs["scores"]`, as rnn_tagger writes them.
"""
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from .data.corpus import GoldTokenCorpus


def gold_token_examples(nlp: Language, path: Union[str, Path], sentences: bool = True) -> List[Example]:
    """Examples from a .spacy file whose predicted docs carry the gold tokens
    (and the gold sentence starts, unless `sentences` is False: then the
    pipeline's own sentencizer, if it has one, sets them, as for raw text)."""
    return list(GoldTokenCorpus(path, drop_sentences=0.0 if sentences else 1.0)(nlp))


def evaluate_gold_tokens(nlp: Language, path: Union[str, Path], batch_size: int = 256, sentences: bool = True) -> Dict:
    """Entity P/R/F (overall and per type) on gold tokens, whole documents.

    `spacy evaluate` re-tokenises the text (tokens spaCy splits differently
    from the gold count as errors), and with --gold-preproc it cuts documents
    into sentences. The CoNLL standard scores the gold tokens of whole
    documents, which is what this does, for any pipeline with an entity
    recognizer (ours or spaCy's `ner`).
    """
    return _entity_scores(nlp, gold_token_examples(nlp, path, sentences=sentences), batch_size)


def evaluate_raw_text(nlp: Language, path: Union[str, Path], batch_size: int = 256) -> Dict:
    """Entity P/R/F as `spacy evaluate` scores it: the pipeline reads each
    document's raw text with its own tokenizer and sentence boundaries (no
    gold tokens or sentence starts), and gold entities are aligned to its
    tokens. What users get on their own text."""
    from spacy.training import Corpus

    return _entity_scores(nlp, list(Corpus(path)(nlp)), batch_size)


def _entity_scores(nlp: Language, examples: List[Example], batch_size: int) -> Dict:
    scores = nlp.evaluate(examples, batch_size=batch_size)
    return {
        "ents_p": scores["ents_p"],
        "ents_r": scores["ents_r"],
        "ents_f": scores["ents_f"],
        "ents_per_type": scores["ents_per_type"],
        "n_docs": len(examples),
        "n_words": sum(len(eg.reference) for eg in examples),
    }


MISSED = "(missed)"
SPURIOUS = "(spurious)"


def scored_predictions(pairs: Iterable[Tuple[Doc, Doc]], spans_key: str) -> Tuple[numpy.ndarray, numpy.ndarray, int]:
    """Per predicted entity, its score and whether it is exactly a gold entity; plus the gold count."""
    scores: List[float] = []
    correct: List[bool] = []
    n_gold = 0
    for predicted, gold in pairs:
        gold_set = {(e.start_char, e.end_char, e.label_) for e in gold.ents}
        n_gold += len(gold_set)
        group = predicted.spans[spans_key] if spans_key in predicted.spans else []
        group_scores = group.attrs.get("scores", []) if len(group) else []
        for span, score in zip(group, group_scores):
            scores.append(float(score))
            correct.append((span.start_char, span.end_char, span.label_) in gold_set)
    return numpy.asarray(scores, dtype="f8"), numpy.asarray(correct, dtype=bool), n_gold


def calibration(scores: numpy.ndarray, correct: numpy.ndarray, n_bins: int = 10) -> Dict:
    """Expected calibration error over equal-width score bins, and the bins themselves."""
    edges = numpy.linspace(0.0, 1.0, n_bins + 1)
    bins = []
    ece = 0.0
    for i in range(n_bins):
        lo, hi = edges[i], edges[i + 1]
        inside = (scores >= lo) & ((scores < hi) if i < n_bins - 1 else (scores <= hi))
        count = int(inside.sum())
        if count:
            confidence = float(scores[inside].mean())
            accuracy = float(correct[inside].mean())
            ece += count / max(1, len(scores)) * abs(confidence - accuracy)
        else:
            confidence = accuracy = float("nan")
        bins.append({"lo": float(lo), "hi": float(hi), "count": count, "confidence": confidence, "accuracy": accuracy})
    return {"ece": float(ece), "n": int(len(scores)), "bins": bins}


def threshold_curve(
    scores: numpy.ndarray, correct: numpy.ndarray, n_gold: int, thresholds: Sequence[float] = tuple(x / 10 for x in range(10))
) -> List[Dict]:
    """Entity precision, recall and F1 when entities below each threshold are dropped."""
    rows = []
    for t in thresholds:
        kept = scores >= t
        tp = int((correct & kept).sum())
        n_pred = int(kept.sum())
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_gold if n_gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        rows.append({"threshold": t, "precision": p, "recall": r, "f": f, "kept": n_pred})
    return rows


def confusion(pairs: Iterable[Tuple[Doc, Doc]]) -> Counter:
    """Counts of (gold type, predicted type) over entities, matching spans by exact
    boundaries; unmatched gold entities are (gold, MISSED), unmatched predictions
    (SPURIOUS, predicted)."""
    counts: Counter = Counter()
    for predicted, gold in pairs:
        pred = {(e.start_char, e.end_char): e.label_ for e in predicted.ents}
        ref = {(e.start_char, e.end_char): e.label_ for e in gold.ents}
        for key, label in ref.items():
            counts[(label, pred.get(key, MISSED))] += 1
        for key, label in pred.items():
            if key not in ref:
                counts[(SPURIOUS, label)] += 1
    return counts


def errors_per_doc(predicted: Doc, gold: Doc) -> int:
    """Predicted entities that are wrong plus gold entities that were missed."""
    pred = {(e.start_char, e.end_char, e.label_) for e in predicted.ents}
    ref = {(e.start_char, e.end_char, e.label_) for e in gold.ents}
    return len(pred ^ ref)
