"""The `rnn_tagger` pipeline component: an ner-style TrainablePipe over
per-token tag scores, decoded into valid entity spans.

Docs in, `doc.ents` and `doc.spans[spans_key]` out. The model (ml/) maps
docs to per-token tag scores; the tag lattice (lattice.py) turns scores into
tag paths, entity confidences and the CRF loss; this module knows about Docs,
Examples, labels and settings.
"""
import hashlib
import json
from itertools import islice
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.attrs import ENT_IOB, ENT_TYPE, IS_SPACE
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, SequenceCategoricalCrossentropy, set_dropout_rate
from thinc.types import Floats2d, Ints1d

from ..ml.bilstm import set_int8_inference
from ..ml.crf import add_transition_gradient, transition_scores
from ..ml.features import fill_known_words
from ..ml.legacy import upgrade_model_bytes
from .lattice import IMPOSSIBLE, Span3, TagLattice, biluo_to_scheme, check_scheme

# The model of `nlp.add_pipe("rnn_tagger")` without a config: the same model
# as configs/config.cfg (a test keeps the two equal).
DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_rnn_ner.BiLSTMCRFTagger.v2"
hidden_width = 128
depth = 1
dropout = 0.25
nO = null
context = "sentence"
doc_memory = true
memory_conv_width = 64

[model.embed]
@architectures = "spacy_rnn_ner.FeatureEmbed.v2"
width = 128
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
rows = [20000, 5000, 10000, 2000]
use_clusters = true
cluster_prefixes = [4, 6, 10, 20]
cluster_rows = 5000
char_width = 16
n_chars = 8
include_static_vectors = false
min_word_count = 1
word_dropout = 0.1
cluster_case_fallback = true
char_cnn_filters = 0
char_cnn_width = 25
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]
# Log-probabilities are taken of softmax outputs; this floor keeps log(0) finite.
PROB_FLOOR = 1e-12
# Values of Token.ent_iob: 1 inside an entity, 3 at its start.
_IOB_INSIDE, _IOB_BEGIN = 1, 3


@Language.factory(
    "rnn_tagger",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "scheme": "BILUO",
        "spans_key": "rnn_tagger",
        "threshold": 0.0,
        "temperature": 1.0,
        "overwrite_ents": False,
        "int8_inference": False,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
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
    overwrite_ents: bool = False,
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
        computed (calibration). It does not change which entities are predicted.
    overwrite_ents: replace the entities that earlier components set; by
        default they are kept and the tagger labels the other tokens.
    scorer: the scoring function; spaCy's ner scorer by default.
    int8_inference: predict with an int8 copy of the LSTM (torch dynamic
        quantization; training is unchanged).
    """
    return RNNTagger(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        spans_key=spans_key,
        threshold=threshold,
        temperature=temperature,
        overwrite_ents=overwrite_ents,
        scorer=scorer,
        int8_inference=int8_inference,
    )


class DocPrediction(NamedTuple):
    """What `predict` returns per doc: tag ids, entity spans (start, end, label) and their confidences."""

    tag_ids: Ints1d
    spans: List[Span3]
    scores: List[float]


class RNNTagger(TrainablePipe):
    """Label every token with an entity tag and decode valid spans into `doc.ents`."""

    # The settings come from the config (also after spacy.load with overrides);
    # a saved cfg's values for them are ignored on load.
    SETTINGS = ("scheme", "spans_key", "threshold", "temperature", "overwrite_ents")

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
        overwrite_ents: bool = False,
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
            "overwrite_ents": bool(overwrite_ents),
        }
        self._settings = {key: self.cfg[key] for key in self.SETTINGS}
        set_int8_inference(model, int8_inference)
        self._lattice_cache: Optional[TagLattice] = None
        # A copy of the model, set by nlp.resume_training(), that `rehearse` learns from.
        self._rehearsal_model: Optional[Model] = None

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
    def lattice(self) -> TagLattice:
        """The tag lattice of the current labels and scheme."""
        cached = self._lattice_cache
        if cached is None or cached.labels != self.labels or cached.scheme != self.scheme:
            cached = self._lattice_cache = TagLattice(self.labels, self.scheme)
        return cached

    @property
    def tags(self) -> List[str]:
        """The per-token tags, in the order of the model's output columns."""
        return self.lattice.tags

    def add_label(self, label: str) -> int:
        """Add an entity type. Returns 1 if new, else 0.

        On a trained component the output layer (and the CRF transitions)
        grow by the new label's tags, keeping every existing weight, so the
        old labels are predicted as before until the next update. Create a
        new optimizer after adding labels (nlp.create_optimizer()): an
        optimizer's state is shaped like the weights it has updated.
        """
        self._check_label(label)
        if label in self.labels:
            return 0
        n_tags = len(self.tags)
        self._append_label(label)
        if self._is_initialized():
            for model in (self.model, self._rehearsal_model):
                if model is not None:
                    _resize_output(model, n_tags, len(self.tags))
        return 1

    def _check_label(self, label: object) -> None:
        # spaCy's ner takes any string; an empty one cannot label a Span.
        if not isinstance(label, str) or not label:
            raise ValueError(
                f"[{self.name}] Invalid entity label {label!r}: a label must be a non-empty "
                "string (spaCy's doc.ents cannot hold an empty label). Any other string "
                "works, with '-', spaces or tag-like prefixes such as 'B-thing'."
            )

    def _append_label(self, label: str) -> int:
        self._check_label(label)
        if label in self.labels:
            return 0
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def _is_initialized(self) -> bool:
        return self.model.get_ref("output").has_param("W") is True

    def _require_initialized(self) -> None:
        if not self._is_initialized() or not self.labels:
            raise ValueError(
                f"[{self.name}] The component '{self.name}' has not been initialized, so "
                "it has no labels or weights. Call nlp.initialize(get_examples) with "
                "annotated examples, or add_label(...) then nlp.initialize() (or train with "
                "`spacy train`) before using it, or load a trained pipeline with spacy.load()."
            )

    @property
    def uses_crf(self) -> bool:
        """Whether the model has a CRF output (spacy_rnn_ner.BiLSTMCRFTagger)."""
        return self.model.has_ref("crf")

    def _transitions(self) -> numpy.ndarray:
        learned = transition_scores(self.model.get_ref("crf")) if self.uses_crf else None
        return self.lattice.transitions(learned)

    # -- prediction ------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        """Decode the best valid tag sequence of each doc and score its entities."""
        docs = list(docs)
        self._require_initialized()
        self._check_vocab(docs)
        if not any(len(doc) for doc in docs):
            return [DocPrediction(numpy.zeros((0,), dtype="i"), [], []) for _ in docs]
        return self.decode(self.model.predict(docs), [self._token_constraints(doc) for doc in docs])

    def _check_vocab(self, docs: Sequence[Doc]) -> None:
        for doc in docs:
            if doc.vocab is not self.vocab and doc.vocab.lang != self.vocab.lang:
                raise ValueError(
                    f"[{self.name}] A doc was made with a vocab for language "
                    f"'{doc.vocab.lang or 'none'}', but this pipeline's is '{self.vocab.lang}', so "
                    "its word features would not match the trained ones. Make docs with "
                    "nlp.make_doc(text), nlp(text) or Doc(nlp.vocab, words=...)."
                )

    def _token_constraints(self, doc: Doc) -> Optional[numpy.ndarray]:
        """The tags each token may take, or None where all may.

        Tokens of entities set by earlier components stay outside the tagger's
        own entities (unless overwrite_ents), and a whitespace token is never
        the first or last token of an entity, as in spaCy's ner.
        """
        if not len(doc):
            return None
        flags = doc.to_array([IS_SPACE, ENT_IOB])
        space = flags[:, 0] == 1
        preset = numpy.isin(flags[:, 1], [_IOB_INSIDE, _IOB_BEGIN]) & (not self.cfg["overwrite_ents"])
        if not space.any() and not preset.any():
            return None
        lattice = self.lattice
        mask = numpy.ones((len(doc), lattice.n_tags), dtype=bool)
        # BIO cannot tell a whitespace token that ends an entity from one inside it.
        mask[space] = lattice.masks_for(["O", "I"] if self.scheme == "BILUO" else ["O"])
        mask[preset] = lattice.masks_for(["O"])
        return mask

    def decode(
        self, scores: Sequence[Floats2d], constraints: Optional[Sequence[Optional[numpy.ndarray]]] = None
    ) -> List[DocPrediction]:
        """Exact Viterbi decoding under the scheme's constraints, plus entity confidences.

        Softmax models decode tag log-probabilities under the scheme's
        constraints; CRF models add their learned transitions. An entity's
        confidence is its marginal probability under the same lattice
        (forward-backward): the probability that exactly this span, with this
        label, is an entity. `constraints`: per doc, the tags each token may take.
        """
        lattice = self.lattice
        ops = self.model.ops
        if self.uses_crf:
            emissions = [ops.to_numpy(s) for s in scores]
        else:
            emissions = [numpy.log(numpy.maximum(ops.to_numpy(p), PROB_FLOOR)) for p in scores]
        if constraints is not None:
            emissions = [
                e if mask is None else (e + numpy.where(mask, 0.0, IMPOSSIBLE)).astype("f")
                for e, mask in zip(emissions, constraints)
            ]
        trans = self._transitions()
        paths = lattice.decode(emissions, trans)
        temperature = float(self.cfg["temperature"])
        if temperature != 1.0:
            emissions = [e / temperature for e in emissions]
            trans = trans / temperature
        marginals = lattice.forward_backward(emissions, trans, want_pairs=False, keep_tables=True)
        predictions = []
        for i, path in enumerate(paths):
            spans = lattice.spans(path)
            probs = lattice.span_probabilities(marginals, i, emissions[i], trans, path, spans)
            predictions.append(DocPrediction(path, spans, probs))
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: Sequence[DocPrediction]) -> None:
        """Write every predicted entity with its confidence to doc.spans[spans_key],
        and those at or above the threshold to doc.ents, beside the entities
        earlier components set (or instead of them, with overwrite_ents)."""
        key, threshold = self.cfg["spans_key"], self.cfg["threshold"]
        keep_preset = not self.cfg["overwrite_ents"]
        for doc, pred in zip(docs, predictions):
            spans = [Span(doc, a, b, label=label) for a, b, label in pred.spans]
            group = SpanGroup(doc, name=key, spans=spans)
            group.attrs["scores"] = numpy.asarray(pred.scores, dtype="f")
            doc.spans[key] = group
            ents = [span for span, p in zip(spans, pred.scores) if p >= threshold]
            blocked = None
            if keep_preset and len(doc):
                ents = sorted(list(doc.ents) + ents, key=lambda span: span.start)
                flags = doc.to_array([ENT_IOB, ENT_TYPE])
                blocked_at = numpy.flatnonzero((flags[:, 0] == _IOB_BEGIN) & (flags[:, 1] == 0))
                blocked = [doc[int(i) : int(i) + 1] for i in blocked_at] or None
            doc.set_ents(ents, blocked=blocked, default="outside")

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
        self._require_initialized()
        return self._step(examples, drop, sgd, losses, "RNNTagger.update", self.get_loss)

    def rehearse(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn to keep the tag scores of the model as it was when
        nlp.resume_training() was called, on any text (spaCy's rehearsal, which
        limits forgetting while a new type is learned). The columns of tags
        added since then are left free."""
        if self._rehearsal_model is None:  # nothing to keep yet
            losses = {} if losses is None else losses
            losses.setdefault(self.name, 0.0)
            return losses
        return self._step(examples, drop, sgd, losses, "RNNTagger.rehearse", self._rehearsal_loss)

    def _rehearsal_loss(self, examples: List[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        targets = self._rehearsal_model.predict([eg.predicted for eg in examples])  # type: ignore[union-attr]
        d_scores, loss = [], 0.0
        for score, target in zip(scores, targets):
            d = self.model.ops.alloc2f(*score.shape)
            n = target.shape[1]
            d[:, :n] = score[:, :n] - target
            d_scores.append(d)
            loss += float((d**2).sum())
        return loss, d_scores

    def _step(
        self,
        examples: Iterable[Example],
        drop: float,
        sgd: Optional[Optimizer],
        losses: Optional[Dict[str, float]],
        where: str,
        get_loss: Callable[[List[Example], List[Floats2d]], Tuple[float, List[Floats2d]]],
    ) -> Dict[str, float]:
        """One update: scores for the examples' docs, `get_loss`'s gradient back
        through the model, the optimizer step; the loss is added to `losses`."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, where)
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = get_loss(examples, scores)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        """The example's gold tags in our scheme, None where there is no usable gold.

        spaCy marks tokens without annotation as None and tokens whose gold
        boundaries do not align with the predicted tokens as '-'; entity types
        this component does not know are treated as unannotated too.
        """
        known = self.lattice.index
        gold = biluo_to_scheme(example.get_aligned_ner(), self.scheme)
        return [tag if tag in known else None for tag in gold]

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """The loss against the aligned gold tags (cross-entropy, or the CRF's
        negative log-likelihood); unannotated tokens add nothing."""
        validate_examples(examples, "RNNTagger.get_loss")
        truths = [self.gold_tags(eg) for eg in examples]
        ops = self.model.ops
        if self.uses_crf:
            lattice = self.lattice
            masks = [lattice.tag_mask(truth) for truth in truths]
            host_scores = [ops.to_numpy(s) for s in scores]
            loss, d_scores, d_trans = lattice.crf_loss(host_scores, masks, self._transitions())
            add_transition_gradient(self.model.get_ref("crf"), d_trans * lattice.allowed)
            return loss, [ops.asarray2f(d) for d in d_scores]
        loss_func = SequenceCategoricalCrossentropy(names=self.tags, normalize=False, missing_value=None)
        d_scores, loss = loss_func(scores, truths)
        if ops.xp.isnan(loss):
            raise ValueError(f"[{self.name}] The loss became NaN; lower the learning rate.")
        return float(loss), d_scores

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
        if labels is None:
            labels = sorted({ent.label_ for eg in annotated for ent in eg.reference.ents})
        # Initialization (re)builds the output layer, so labels may be added here
        # even if the component was initialized before.
        for label in labels:
            self._append_label(label)
        if not self.labels:
            if not annotated:
                raise ValueError(
                    f"[{self.name}] No labels, and none of the {len(examples)} initialization "
                    "examples holds any entity annotation (no token is marked as inside or "
                    "outside an entity), so there is nothing to learn the labels from. Give "
                    f"the labels (add_label, or [initialize.components.{self.name}.labels] as "
                    "`spacy init labels` writes them), or check that your training corpus sets "
                    "doc.ents (for CoNLL files, convert them with scripts/convert.py) and that "
                    "[paths.train] points at the right file."
                )
            raise ValueError(
                f"[{self.name}] No entity labels: the examples mark every token as outside "
                "an entity. Add labels with [initialize.components."
                f"{self.name}.labels] or train on data that contains entities."
            )
        self.model.get_ref("output").set_dim("nO", len(self.tags), force=True)
        if self.uses_crf:
            self.model.get_ref("crf").set_dim("nO", len(self.tags), force=True)
        # A sample doc tells the layers the language (for the Brown clusters) even without examples.
        doc_sample = [eg.predicted for eg in examples[:10] if len(eg.predicted)]
        self.model.initialize(X=doc_sample or [Doc(self.vocab, words=["sample"])])
        # A known-word vocabulary (FeatureEmbed.v2) is learned from all the
        # annotated training docs; without any, it stays empty, which means
        # every word keeps its own vector (no "unknown word" mapping).
        fill_known_words(self.model.get_ref("embed"), (eg.predicted for eg in annotated))

    # -- serialization ---------------------------------------------------
    # TrainablePipe saves cfg, vocab and model. The hooks add a SHA-256 over
    # the weights, the labels and the scheme (thinc and torch load flipped
    # bytes inside a weight array without complaint, and reordered labels
    # would swap the types predicted), and keep the config's settings.

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        """Serialize the settings, vocab and weights (with their checksum) to bytes."""
        self._set_checksum()
        return super().to_bytes(exclude=exclude)

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the settings, vocab and weights (with their checksum) to a directory."""
        self._set_checksum()
        super().to_disk(path, exclude=exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "RNNTagger":
        """Load from bytes, with a clear error when the data is truncated, corrupted or edited."""
        return self._load(
            lambda: srsly.msgpack_loads(bytes_data),
            lambda extra: super(RNNTagger, self).from_bytes(bytes_data, exclude=[*exclude, *extra]),
            "the given bytes",
        )

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "RNNTagger":
        """Load from a directory, with a clear error when a file is truncated, corrupted or edited."""
        path = Path(path)

        def parts() -> Dict:
            return {"cfg": (path / "cfg").read_bytes(), "model": (path / "model").read_bytes()}

        return self._load(parts, lambda extra: super(RNNTagger, self).from_disk(path, exclude=[*exclude, *extra]), str(path))

    def _set_checksum(self) -> None:
        self.cfg["checksum"] = _checksum(self.model.to_bytes(), self.labels, self.scheme)

    def _load(self, read_parts: Callable[[], Dict], load: Callable[[List[str]], object], where: str) -> "RNNTagger":
        """Check the saved parts, then let TrainablePipe load them (`load`, given
        the parts to leave out); restore the config's settings afterwards."""
        try:
            parts = read_parts()
            saved = srsly.json_loads(parts["cfg"]) if isinstance(parts["cfg"], (bytes, str)) else parts["cfg"]
            model_bytes = parts["model"]
        except Exception as err:
            raise self._load_error(where, err) from err
        problem = _verify(saved, model_bytes, self._settings["scheme"])
        if problem:
            raise self._load_error(where, ValueError(problem))
        try:
            if "checksum" in saved:
                load([])
            else:  # saved by an earlier release: its model bytes may need upgrading
                load(["model"])
                self.model.from_bytes(upgrade_model_bytes(model_bytes))
        except Exception as err:
            raise self._load_error(where, err) from err
        self.cfg.update(self._settings)
        self.cfg.pop("model_sha256", None)
        output = self.model.get_ref("output")
        if output.has_dim("nO") is True and output.get_dim("nO") != len(self.tags):
            raise self._load_error(
                where, ValueError(f"{len(self.labels)} labels give {len(self.tags)} tags, but the weights have {output.get_dim('nO')}")
            )
        return self

    def _load_error(self, where: str, err: Exception) -> ValueError:
        return ValueError(
            f"[{self.name}] Could not load the component '{self.name}' from {where}: "
            f"the weights or settings are truncated, corrupted, edited or from an incompatible "
            f"model config ({type(err).__name__}: {err}). Copy the pipeline directory "
            "again from a good source, or retrain it."
        )


# Bias of the output columns of tags added to a trained model: far enough
# below the trained columns that the old labels' paths are decoded as before,
# near enough that an update or two through the output weights can raise it.
NEW_TAG_BIAS = -10.0


def _resize_output(model: Model, old: int, new: int) -> None:
    """Grow the output layer and the CRF transitions from `old` to `new` tags,
    keeping the existing weights (new tags are appended at the end)."""
    output = model.get_ref("output")
    ops = output.ops
    W, b = output.get_param("W"), output.get_param("b")
    new_W = ops.alloc2f(new, W.shape[1])
    new_W[:old] = W
    new_b = ops.alloc1f(new) + NEW_TAG_BIAS
    new_b[:old] = b
    _replace_params(output, new, {"W": new_W, "b": new_b})
    if model.has_ref("crf"):
        crf = model.get_ref("crf")
        new_T = ops.alloc2f(new, new)
        new_T[:old, :old] = crf.get_param("T")
        _replace_params(crf, new, {"T": new_T})


def _replace_params(layer: Model, nO: int, params: Dict[str, Floats2d]) -> None:
    """Give `layer` a new output width and new params (with zero gradients):
    thinc allows changing a dimension only while the params are unset."""
    for name in params:
        layer.set_param(name, None)
    layer.set_dim("nO", nO, force=True)
    for name, value in params.items():
        layer.set_param(name, value)
        layer.set_grad(name, layer.ops.alloc(value.shape))


def _checksum(model_bytes: bytes, labels: Sequence[str], scheme: str) -> str:
    digest = hashlib.sha256(model_bytes)
    digest.update(json.dumps({"labels": list(labels), "scheme": scheme}).encode("utf8"))
    return digest.hexdigest()


def _verify(saved_cfg: Dict, model_bytes: bytes, scheme: str) -> Optional[str]:
    """Why the saved cfg and weights do not belong together, or None if they do."""
    if saved_cfg.get("scheme", scheme) != scheme:
        return f"the weights were trained for the {saved_cfg.get('scheme')} scheme, but the config says {scheme}"
    if "checksum" in saved_cfg:
        if _checksum(model_bytes, saved_cfg.get("labels", []), saved_cfg.get("scheme", scheme)) != saved_cfg["checksum"]:
            return "the weights, labels or scheme do not match their saved SHA-256 checksum"
    elif "model_sha256" in saved_cfg:  # saved before the checksum covered the labels
        if hashlib.sha256(model_bytes).hexdigest() != saved_cfg["model_sha256"]:
            return "the weights do not match their saved SHA-256 checksum"
    return None


def save_with_settings(model: Union[str, Path], output: Union[str, Path], name: str, settings: Dict) -> Language:
    """Save the pipeline at `model` to `output` with new settings for component
    `name` (e.g. {"temperature": 1.5}), written into the saved config.cfg so
    that the config stays the one source of truth. Returns the loaded pipeline."""
    import spacy

    nlp = spacy.load(model, config={"components": {name: dict(settings)}})
    nlp.to_disk(output)
    return nlp
