"""The `rnn_tagger` pipeline component: an ner-style TrainablePipe over
per-token tag probabilities, decoded into valid entity spans."""
import hashlib
from itertools import islice
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer, SequenceCategoricalCrossentropy, set_dropout_rate
from thinc.types import Floats2d, Ints1d

from .features import fill_known_words
from .layers import AveragingPyTorchShim
from .lattice import crf_loss_and_gradients, forward_backward, span_probabilities
from .tag_scheme import (
    IMPOSSIBLE,
    ConstrainedDecoder,
    biluo_to_scheme,
    check_scheme,
    make_tags,
    tag_index,
    tag_spans,
    transition_constraints,
)

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_rnn_ner.BiLSTMTagger.v1"
hidden_width = 128
depth = 1
dropout = 0.2

[model.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
rows = [5000, 1000, 2500, 2500]
include_static_vectors = false
"""
# Log-probabilities are taken of softmax outputs; this floor keeps log(0) finite.
PROB_FLOOR = 1e-12


def _default_model_config() -> Dict:
    from thinc.api import Config

    return Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "rnn_tagger",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": _default_model_config(),
        "scheme": "BILUO",
        "spans_key": "rnn_tagger",
        "threshold": 0.0,
        "temperature": 1.0,
        "int8_inference": False,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_per_type": None,
    },
)
def make_rnn_tagger(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    spans_key: str,
    threshold: float,
    temperature: float,
    scorer: Optional[Callable],
    int8_inference: bool = False,
) -> "RNNTagger":
    """Create an `rnn_tagger`: a BiLSTM entity tagger that writes `doc.ents`.

    model: a thinc model mapping docs to per-token tag scores.
    scheme: "BILUO" (default) or "BIO", the tag set the model predicts.
    spans_key: every predicted entity also goes to doc.spans[spans_key], with
        its confidence in the group's attrs["scores"].
    threshold: entities whose confidence is below this stay out of doc.ents
        (they remain in doc.spans[spans_key]); 0 keeps all.
    temperature: divides the lattice scores before the confidences are
        computed (calibration; `scripts/report.py --fit-temperature` fits it).
        It does not change which entities are predicted.
    scorer: the scoring function; spaCy's ner scorer by default.
    int8_inference: predict with an int8 copy of the LSTM (torch dynamic
        quantization; training is unchanged). Measured on CoNLL-2003 test:
        1.07x the words/s through nlp.pipe, F1 +0.03 (BENCHMARKS.md).
    """
    return RNNTagger(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        spans_key=spans_key,
        threshold=threshold,
        temperature=temperature,
        scorer=scorer,
        int8_inference=int8_inference,
    )


class DocPrediction(NamedTuple):
    """What `predict` returns per doc: tag ids, entity spans (start, end, label) and their confidences."""

    tag_ids: Ints1d
    spans: List[Tuple[int, int, str]]
    scores: List[float]


class RNNTagger(TrainablePipe):
    """Label every token with an entity tag and decode valid spans into `doc.ents`."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "rnn_tagger",
        *,
        scheme: str = "BILUO",
        spans_key: str = "rnn_tagger",
        threshold: float = 0.0,
        temperature: float = 1.0,
        scorer: Optional[Callable] = None,
        int8_inference: bool = False,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"[{name}] threshold must be between 0 and 1, got {threshold}.")
        if temperature <= 0:
            raise ValueError(f"[{name}] temperature must be positive, got {temperature}.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "labels": [],
            "scheme": check_scheme(scheme),
            "spans_key": spans_key,
            "threshold": threshold,
            "temperature": temperature,
        }
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, AveragingPyTorchShim):
                    shim.int8 = bool(int8_inference)
        self._constraint_cache: Optional[Tuple[Tuple, Tuple]] = None

    # -- labels and tags -------------------------------------------------

    @property
    def labels(self) -> Tuple[str, ...]:
        """The entity types this component predicts, e.g. ('LOC', 'ORG', 'PER')."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        """The labels in the form `spacy init labels` writes and `initialize` reads."""
        return list(self.labels)

    @property
    def scheme(self) -> str:
        return self.cfg["scheme"]

    @property
    def tags(self) -> List[str]:
        """The per-token tags, in the order of the model's output columns."""
        return make_tags(self.labels, self.scheme)

    def add_label(self, label: str) -> int:
        """Add an entity type before initialization. Returns 1 if new, else 0."""
        if label in self.labels:
            return 0
        if self._is_initialized():
            raise ValueError(
                f"[{self.name}] Cannot add label '{label}' to an initialized component: "
                "the output layer's size is fixed. Add all labels before nlp.initialize(), "
                f"or list them in [initialize.components.{self.name}.labels]."
            )
        return self._append_label(label)

    def _append_label(self, label: str) -> int:
        if not isinstance(label, str) or not label or "-" in label or label == "O":
            raise ValueError(
                f"[{self.name}] Invalid entity label {label!r}: labels must be non-empty "
                "strings without '-' (the tag prefix separator), and not 'O'."
            )
        if label in self.labels:
            return 0
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def _is_initialized(self) -> bool:
        output = self.model.get_ref("output")
        return output.has_param("W") is True

    def _require_initialized(self) -> None:
        if not self._is_initialized() or not self.labels:
            raise ValueError(
                f"[{self.name}] The component '{self.name}' has not been initialized, so "
                "it has no labels or weights. Call nlp.initialize(get_examples) with "
                "annotated examples (or train with `spacy train`) before using it, or "
                "load a trained pipeline with spacy.load()."
            )

    @property
    def uses_crf(self) -> bool:
        """Whether the model has a CRF output (spacy_rnn_ner.BiLSTMCRFTagger.v1)."""
        return self.model.has_ref("crf")

    def _constraints(self) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
        key = (self.labels, self.scheme)
        if self._constraint_cache is None or self._constraint_cache[0] != key:
            self._constraint_cache = (key, transition_constraints(self.tags, self.scheme))
        return self._constraint_cache[1]

    def _crf_transitions(self) -> numpy.ndarray:
        return self.model.ops.to_numpy(self.model.get_ref("crf").get_param("T"))

    # -- prediction ------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        """Decode the best valid tag sequence of each doc and score its entities."""
        docs = list(docs)
        self._require_initialized()
        if not any(len(doc) for doc in docs):
            return [DocPrediction(numpy.zeros((0,), dtype="i"), [], []) for _ in docs]
        return self.decode(self.model.predict(docs))

    def _lattice(self, scores: Sequence[Floats2d]) -> Tuple[List[numpy.ndarray], numpy.ndarray]:
        """Per-token lattice scores and the transition matrix (IMPOSSIBLE where forbidden).

        Softmax models: tag log-probabilities, transitions only constrained.
        CRF models: the emission scores and the learned transitions.
        """
        allowed, _, _ = self._constraints()
        if self.uses_crf:
            lattice = [self.model.ops.to_numpy(s) for s in scores]
            learned = self._crf_transitions()
        else:
            lattice = [numpy.log(numpy.maximum(self.model.ops.to_numpy(p), PROB_FLOOR)) for p in scores]
            learned = numpy.zeros(allowed.shape, dtype="f")
        return lattice, numpy.where(allowed, learned, IMPOSSIBLE).astype("f")

    def decode(self, scores: Sequence[Floats2d]) -> List["DocPrediction"]:
        """Exact Viterbi decoding under the scheme's constraints, plus entity confidences.

        An entity's confidence is its marginal probability under the same
        constrained lattice (forward-backward): the probability that exactly
        this span, with this label, is an entity.
        """
        allowed, start, end = self._constraints()
        lattice, trans = self._lattice(scores)
        decoder = ConstrainedDecoder(allowed, start, end, transitions=numpy.where(allowed, trans, 0.0))
        paths = decoder(lattice)
        start_s = numpy.where(start, 0.0, IMPOSSIBLE)
        end_s = numpy.where(end, 0.0, IMPOSSIBLE)
        temperature = float(self.cfg.get("temperature", 1.0))
        if temperature != 1.0:
            lattice = [s / temperature for s in lattice]
            trans = trans / temperature
        marginals = forward_backward(lattice, trans, start_s, end_s, want_pairs=False, keep_tables=True)
        tags = self.tags
        index = tag_index(tags)
        predictions = []
        for i, path in enumerate(paths):
            spans = tag_spans([tags[t] for t in path], self.scheme)
            continue_tag = None
            if self.scheme == "BIO":
                continue_tag = [index[f"I-{label}"] for _, _, label in spans]
            probs = span_probabilities(
                marginals, i, lattice[i], trans, end_s, path, [(a, b) for a, b, _ in spans], continue_tag
            )
            predictions.append(DocPrediction(path, spans, probs))
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: Sequence["DocPrediction"]) -> None:
        """Write entities at or above the threshold to doc.ents (other tokens become 'O'),
        and every predicted entity with its confidence to doc.spans[spans_key]."""
        key, threshold = self.cfg["spans_key"], self.cfg["threshold"]
        for doc, pred in zip(docs, predictions):
            spans = [Span(doc, a, b, label=label) for a, b, label in pred.spans]
            group = SpanGroup(doc, name=key, spans=spans)
            group.attrs["scores"] = numpy.asarray(pred.scores, dtype="f")
            doc.spans[key] = group
            doc.set_ents([s for s, p in zip(spans, pred.scores) if p >= threshold], default="outside")

    # -- training --------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples; partially annotated docs are fine."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "RNNTagger.update")
        self._require_initialized()
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, scores)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        """The example's gold tags in our scheme, None where there is no usable gold.

        spaCy marks tokens without annotation as None and tokens whose gold
        boundaries do not align with the predicted tokens as '-' (GUIDE trap 7);
        entity types this component does not know are treated as unannotated.
        """
        known = tag_index(self.tags)
        gold = biluo_to_scheme(example.get_aligned_ner(), self.scheme)
        return [tag if tag in known else None for tag in gold]

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """Cross-entropy against the aligned gold tags; unannotated tokens add nothing."""
        validate_examples(examples, "RNNTagger.get_loss")
        truths = [self.gold_tags(eg) for eg in examples]
        if self.uses_crf:
            return self._crf_loss(truths, scores)
        loss_func = SequenceCategoricalCrossentropy(
            names=self.tags, normalize=False, missing_value=None
        )
        d_scores, loss = loss_func(scores, truths)
        if self.model.ops.xp.isnan(loss):
            raise ValueError(f"[{self.name}] The loss became NaN; lower the learning rate.")
        return float(loss), d_scores

    def _crf_loss(self, truths: List[List[Optional[str]]], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """CRF negative log-likelihood; tokens without gold are marginalised over."""
        index = tag_index(self.tags)
        n_tags = len(self.tags)
        gold_allowed = []
        for doc_truth in truths:
            mask = numpy.ones((len(doc_truth), n_tags), dtype=bool)
            for i, tag in enumerate(doc_truth):
                if tag is not None:
                    mask[i] = False
                    mask[i, index[tag]] = True
            gold_allowed.append(mask)
        allowed, start, end = self._constraints()
        trans = numpy.where(allowed, self._crf_transitions(), IMPOSSIBLE).astype("f")
        start_s = numpy.where(start, 0.0, IMPOSSIBLE)
        end_s = numpy.where(end, 0.0, IMPOSSIBLE)
        host_scores = [self.model.ops.to_numpy(s) for s in scores]
        loss, d_scores, d_trans = crf_loss_and_gradients(host_scores, gold_allowed, trans, start_s, end_s)
        crf = self.model.get_ref("crf")
        crf.inc_grad("T", self.model.ops.asarray2f(d_trans * allowed))
        return loss, [self.model.ops.asarray2f(d) for d in d_scores]

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
    ) -> None:
        """Set the labels (given, or read off the examples' entities) and allocate the weights."""
        validate_get_examples(get_examples, "RNNTagger.initialize")
        examples = list(islice(get_examples(), 0, None))
        annotated = [eg for eg in examples if eg.reference.has_annotation("ENT_IOB")]
        if not annotated:
            raise ValueError(
                f"[{self.name}] None of the {len(examples)} initialization examples holds "
                "any entity annotation (no token is marked as inside or outside an entity), "
                "so there is nothing to learn from. Check that your training corpus sets "
                "doc.ents (for CoNLL files, convert them with scripts/convert.py), or that "
                "[paths.train] points at the right file."
            )
        if labels is None:
            labels = sorted({ent.label_ for eg in annotated for ent in eg.reference.ents})
        # Initialization (re)builds the output layer, so labels may be added here
        # even if the component was initialized before.
        for label in labels:
            self._append_label(label)
        if not self.labels:
            raise ValueError(
                f"[{self.name}] No entity labels: the examples mark every token as outside "
                "an entity. Add labels with [initialize.components."
                f"{self.name}.labels] or train on data that contains entities."
            )
        self.model.get_ref("output").set_dim("nO", len(self.tags), force=True)
        if self.uses_crf:
            self.model.get_ref("crf").set_dim("nO", len(self.tags), force=True)
        doc_sample = [eg.predicted for eg in examples[:10] if len(eg.predicted)]
        self.model.initialize(X=doc_sample or None)
        # Embeddings with a known-word vocabulary (FeatureEmbed.v2) learn it from all the training docs.
        fill_known_words(self.model, (eg.predicted for eg in examples))

    # -- serialization ---------------------------------------------------
    # Like TrainablePipe's, plus a SHA-256 of the weights in the saved cfg:
    # thinc/torch load flipped bytes inside a weight array without complaint,
    # so without a checksum a corrupted model would load and predict garbage.

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        """Serialize the settings, vocab and weights (with their checksum) to bytes."""
        model_bytes = self.model.to_bytes()
        cfg = self._cfg_with_checksum(model_bytes)
        serialize = {
            "cfg": lambda: srsly.json_dumps(cfg),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: model_bytes,
        }
        return util.to_bytes(serialize, exclude)

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the settings, vocab and weights (with their checksum) to a directory."""
        model_bytes = self.model.to_bytes()
        cfg = self._cfg_with_checksum(model_bytes)
        serialize = {
            "cfg": lambda p: srsly.write_json(p, cfg),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: Path(p).write_bytes(model_bytes),
        }
        util.to_disk(path, serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "RNNTagger":
        """Load from bytes, with a clear error when the data is truncated or corrupted."""
        parts: Dict = {}
        deserialize = {
            "cfg": lambda b: parts.update(cfg=srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: parts.update(model=b),
        }
        try:
            util.from_bytes(bytes_data, deserialize, exclude)
        except Exception as err:
            raise self._load_error("the given bytes", err) from err
        return self._load(parts, "the given bytes")

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "RNNTagger":
        """Load from a directory, with a clear error when a file is truncated or corrupted."""
        parts: Dict = {}
        deserialize = {
            "cfg": lambda p: parts.update(cfg=srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: parts.update(model=Path(p).read_bytes()),
        }
        try:
            util.from_disk(path, deserialize, exclude)
        except Exception as err:
            raise self._load_error(str(path), err) from err
        return self._load(parts, str(path))

    def _cfg_with_checksum(self, model_bytes: bytes) -> Dict:
        return dict(self.cfg, model_sha256=hashlib.sha256(model_bytes).hexdigest())

    def _load(self, parts: Dict, where: str) -> "RNNTagger":
        cfg = dict(parts.get("cfg", {}))
        expected = cfg.pop("model_sha256", None)
        model_bytes = parts.get("model")
        if model_bytes is not None:
            if expected is not None and hashlib.sha256(model_bytes).hexdigest() != expected:
                raise self._load_error(where, ValueError("the weights do not match their saved SHA-256 checksum"))
            try:
                self.model.from_bytes(model_bytes)
            except Exception as err:
                raise self._load_error(where, err) from err
        self.cfg.update(cfg)
        self._constraint_cache = None
        return self

    def _load_error(self, where: str, err: Exception) -> ValueError:
        return ValueError(
            f"[{self.name}] Could not load the component '{self.name}' from {where}: "
            f"the weights or settings are truncated, corrupted or from an incompatible "
            f"model config ({type(err).__name__}: {err}). Copy the pipeline directory "
            "again from a good source, or retrain it."
        )
