"""Temperature scaling of rnn_tagger's entity confidences, fitted on held-out
data: by the report script, or after every checkpoint of `spacy train` through
the `[training.before_to_disk]` callback, so that a saved pipeline's
confidences are calibrated on the dev set with no extra step.

The fitted temperature becomes the component's `temperature` setting in the
pipeline's config (the one source of truth), so `spacy.load(...).config`
shows it and a load-time override still wins.
"""
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

from .scoring import calibration, gold_token_examples

TEMPERATURES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
# Confidences are clipped this far from 0 and 1 in the log loss.
_EPS = 1e-6


def entity_confidences(
    nlp: Language, name: str, examples: Sequence[Example], temperatures: Sequence[float]
) -> Tuple[Dict[float, numpy.ndarray], numpy.ndarray, List[Span]]:
    """Per entity that component `name` predicts on `examples`: its confidence at
    each temperature, whether its span and label are exactly a gold entity, and
    the span itself.

    The model runs once; each temperature only re-scores the lattice. The
    component's own temperature is left as it was.
    """
    tagger = nlp.get_pipe(name)
    docs = [eg.predicted.copy() for eg in examples]
    for other, proc in nlp.pipeline:
        if other == name:
            break
        docs = list(proc.pipe(docs))
    scores = tagger.model.predict(docs)
    spans: List[Span] = []
    correct: List[bool] = []
    by_t: Dict[float, numpy.ndarray] = {}
    saved = tagger.cfg["temperature"]
    try:
        for temperature in temperatures:
            tagger.cfg["temperature"] = float(temperature)
            predictions = tagger.decode_docs(docs, scores)
            if not by_t:  # the paths, so the spans, do not depend on the temperature
                for doc, pred, eg in zip(docs, predictions, examples):
                    gold = {(e.start_char, e.end_char, e.label_) for e in eg.reference.ents}
                    for start, end, label in pred.spans:
                        span = Span(doc, start, end, label=label)
                        spans.append(span)
                        correct.append((span.start_char, span.end_char, label) in gold)
            by_t[float(temperature)] = numpy.asarray([p for pred in predictions for p in pred.scores], dtype="f8")
    finally:
        tagger.cfg["temperature"] = saved
    return by_t, numpy.asarray(correct, dtype=bool), spans


def log_loss(confidences: numpy.ndarray, correct: numpy.ndarray) -> float:
    """Mean log loss of confidences against whether each entity is correct (clipped at _EPS)."""
    if not len(correct):
        return 0.0
    conf = numpy.clip(confidences, _EPS, 1 - _EPS)
    return float(-(correct * numpy.log(conf) + (~correct) * numpy.log(1 - conf)).mean())


def fit_temperature(
    nlp: Language, name: str, examples: Sequence[Example], temperatures: Sequence[float] = TEMPERATURES
) -> Tuple[float, List[Dict]]:
    """The temperature whose entity confidences have the lowest log loss on
    `examples` (an entity counts as correct when its span and label are
    exactly a gold entity), with a row per temperature (log loss, ECE).

    The model runs once; each temperature only re-scores the lattice. The
    component's own temperature is left as it was.
    """
    by_t, ok, _ = entity_confidences(nlp, name, examples, temperatures)
    rows: List[Dict] = []
    for temperature, confidences in by_t.items():
        conf = numpy.clip(confidences, _EPS, 1 - _EPS)
        rows.append(
            {"temperature": temperature, "log_loss": log_loss(confidences, ok), "ece": calibration(conf, ok)["ece"], "n": int(len(ok))}
        )
    saved = nlp.get_pipe(name).cfg["temperature"]
    best = min(rows, key=lambda row: row["log_loss"])["temperature"] if rows else float(saved)
    return best, rows


def set_setting(nlp: Language, name: str, key: str, value) -> None:
    """Change a setting of component `name` in the pipeline and in its config,
    so that `nlp.config` and a saved config.cfg hold the new value."""
    nlp.get_pipe(name).set_setting(key, value)
    nlp.get_pipe_config(name)[key] = value


@registry.callbacks("spacy_rnn_ner.calibrate_temperature.v1")
def make_calibration_callback(
    path: Union[str, Path], component: str = "rnn_tagger", temperatures: List[float] = list(TEMPERATURES)
) -> Callable[[Language], Language]:
    """A `[training.before_to_disk]` callback: before each checkpoint is saved,
    fit the component's temperature on the corpus at `path` (the dev set:
    gold tokens, whole documents) and write it into the pipeline's config.

    Later evaluations in the same training run see the fitted temperature:
    the threshold then applies to calibrated confidences.
    """

    examples: List[Example] = []

    def calibrate(nlp: Language) -> Language:
        if component not in nlp.pipe_names:
            raise ValueError(
                f"[{component}] spacy_rnn_ner.calibrate_temperature.v1 calibrates the component "
                f"'{component}', which is not in the pipeline ({', '.join(nlp.pipe_names)}). Set its "
                "`component` to the rnn_tagger's name."
            )
        if not examples:  # read once per training run; each fit copies the docs
            examples.extend(gold_token_examples(nlp, path))
        temperature, _ = fit_temperature(nlp, component, examples, temperatures)
        set_setting(nlp, component, "temperature", temperature)
        return nlp

    return calibrate
