"""Temperature scaling of rnn_tagger's entity confidences, fitted on held-out
data: by the report script, or after every checkpoint of `spacy train` through
the `[training.before_to_disk]` callback, so that a saved pipeline's
confidences are calibrated on the dev set with no extra step.

The default config fits the temperature on the dev entities whose text never
was an entity in the training data. A model is surer of the names it was
trained on, and a dev set drawn beside the training data holds more of them
than the text a pipeline later meets: a temperature fitted on all of dev
left later text over-confident (BENCHMARKS.md, "Calibration by default").

The fitted temperature becomes the component's `temperature` setting in the
pipeline's config (the one source of truth), so `spacy.load(...).config`
shows it and a load-time override still wins.
"""
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

from .scoring import calibration, gold_token_examples

TEMPERATURES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
# Fitted on new entities only, the best temperature is higher (up to about 3
# on CoNLL-2003); the grid of the v2 callback reaches further.
TEMPERATURES_V2 = (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0)
# With fewer new entities than this in the dev set, the fit uses all of them.
MIN_UNSEEN = 50
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
    nlp: Language,
    name: str,
    examples: Sequence[Example],
    temperatures: Sequence[float] = TEMPERATURES,
    train_entities: Optional[Collection[str]] = None,
    min_unseen: int = MIN_UNSEEN,
) -> Tuple[float, List[Dict]]:
    """The temperature whose entity confidences have the lowest log loss on
    `examples` (an entity counts as correct when its span and label are
    exactly a gold entity), with a row per temperature (log loss, ECE).

    With `train_entities` (the texts of the training data's entities), only
    the predicted entities whose text is not among them count, unless there
    are fewer than `min_unseen` of those. The model runs once; each temperature
    only re-scores the lattice. The component's own temperature is left as it was.
    """
    by_t, ok, spans = entity_confidences(nlp, name, examples, temperatures)
    if train_entities is not None:
        unseen = numpy.asarray([span.text not in train_entities for span in spans], dtype=bool)
        if unseen.sum() >= min_unseen:
            by_t = {t: conf[unseen] for t, conf in by_t.items()}
            ok = ok[unseen]
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


def entity_texts(nlp: Language, path: Union[str, Path]) -> set:
    """The texts of the gold entities in the corpus at `path` (.spacy)."""
    from spacy.tokens import DocBin

    return {ent.text for doc in DocBin().from_disk(path).get_docs(nlp.vocab) for ent in doc.ents}


@registry.callbacks("spacy_rnn_ner.calibrate_temperature.v2")
def make_calibration_callback_v2(
    path: Union[str, Path],
    train_path: Optional[Union[str, Path]] = None,
    component: str = "rnn_tagger",
    temperatures: List[float] = list(TEMPERATURES_V2),
) -> Callable[[Language], Language]:
    """As v1, but with `train_path` (the training corpus, .spacy) the
    temperature is fitted on the dev entities whose text is not an entity
    there: the new names, on which a model is most over-confident (see the
    module's docstring). Without `train_path` it fits on all, as v1."""
    train_entities: List[set] = []

    def entities(nlp: Language) -> Optional[set]:
        if train_path is None:
            return None
        if not train_entities:
            train_entities.append(entity_texts(nlp, train_path))
        return train_entities[0]

    return _calibration_callback(path, component, temperatures, "spacy_rnn_ner.calibrate_temperature.v2", entities)


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
    return _calibration_callback(path, component, temperatures, "spacy_rnn_ner.calibrate_temperature.v1", lambda nlp: None)


def _calibration_callback(
    path: Union[str, Path],
    component: str,
    temperatures: List[float],
    registered: str,
    train_entities: Callable[[Language], Optional[set]],
) -> Callable[[Language], Language]:
    """The callback both versions return: `train_entities(nlp)` gives the
    training entity texts to leave out of the fit, or None to fit on all."""
    examples: List[Example] = []

    def calibrate(nlp: Language) -> Language:
        if component not in nlp.pipe_names:
            raise ValueError(
                f"[{component}] {registered} calibrates the component "
                f"'{component}', which is not in the pipeline ({', '.join(nlp.pipe_names)}). Set its "
                "`component` to the rnn_tagger's name."
            )
        if not examples:  # read once per training run; each fit copies the docs
            examples.extend(gold_token_examples(nlp, path))
        temperature, _ = fit_temperature(nlp, component, examples, temperatures, train_entities(nlp))
        set_setting(nlp, component, "temperature", temperature)
        return nlp

    return calibrate
