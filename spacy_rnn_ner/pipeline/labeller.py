"""What the two sequence-labelling components share: labels behind a tag
lattice, an output layer that grows with them, the training step (CRF or
softmax loss, rehearsal), initialization and checked serialization.

`RNNTagger` (entities, rnn_tagger.py) and `RNNTokenTagger` (one tag per token,
token_tagger.py) say what the tags are, where the gold comes from and what
prediction writes.
"""
import hashlib
import json
from itertools import islice
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.language import Language
from spacy import util
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer, SequenceCategoricalCrossentropy, set_dropout_rate
from thinc.types import Floats2d

from ..ml.bilstm import set_int8_inference, set_lstm_runtime
from ..ml.crf import add_transition_gradient, transition_scores
from ..ml.features import fill_known_words
from ..ml.legacy import upgrade_model_bytes
from ..ml.storage import check_storage, pack_model_bytes, unpack_model_msg
from .lattice import TagLattice


class SequenceLabeller(TrainablePipe):
    """A TrainablePipe whose model gives per-token scores over the tags of its labels."""

    # Settings that come from the config (also after spacy.load with
    # overrides); a saved cfg's values for them are ignored on load.
    SETTINGS: Tuple[str, ...] = ("storage",)

    # nlp.pipe hands a component batches of nlp.batch_size docs; the model
    # runs on consecutive parts of at most this many words (a longer doc runs
    # alone). Activations grow with the words in a forward pass, and a batch
    # of long documents held them all at once; parts of a few thousand words
    # keep peak memory low and the working set near the CPU caches, without
    # making the LSTM's batches too small to pay.
    batch_words: int = 8000

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str,
        cfg: Dict,
        *,
        scorer: Optional[Callable] = None,
        int8_inference: bool = False,
        storage: str = "float32",
        lstm_runtime: str = "torch",
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {"labels": [], **cfg, "storage": check_storage(storage, name)}
        self._settings = {key: self.cfg[key] for key in self.SETTINGS}
        set_int8_inference(model, int8_inference)
        set_lstm_runtime(model, lstm_runtime, name)
        self._lattice_cache: Optional[TagLattice] = None
        # A copy of the model, set by nlp.resume_training(), that `rehearse` learns from.
        self._rehearsal_model: Optional[Model] = None

    def set_setting(self, key: str, value) -> None:
        """Change one of the SETTINGS (kept after loading weights, like the config's).
        The pipeline's config is not changed here: see calibration.set_setting."""
        if key not in self.SETTINGS:
            raise ValueError(f"[{self.name}] '{key}' is not a setting of this component; settings: {', '.join(self.SETTINGS)}.")
        self.cfg[key] = value
        self._settings[key] = value

    # -- what subclasses define -------------------------------------------

    @property
    def lattice_scheme(self) -> str:
        """The lattice's scheme: an entity scheme, or lattice.TOKEN_TAGS."""
        raise NotImplementedError

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        """The example's gold tag per predicted token, None where there is none."""
        raise NotImplementedError

    def _has_gold(self, doc: Doc) -> bool:
        raise NotImplementedError

    def _labels_in(self, references: List[Doc]) -> List[str]:
        raise NotImplementedError

    def _invalid_label(self, label: object) -> str:
        raise NotImplementedError

    def _no_labels(self, n_examples: int, n_annotated: int) -> str:
        raise NotImplementedError

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
    def lattice(self) -> TagLattice:
        """The tag lattice of the current labels and scheme."""
        cached = self._lattice_cache
        if cached is None or cached.labels != self.labels or cached.scheme != self.lattice_scheme:
            cached = self._lattice_cache = TagLattice(self.labels, self.lattice_scheme)
        return cached

    @property
    def tags(self) -> List[str]:
        """The per-token tags, in the order of the model's output columns."""
        return self.lattice.tags

    def add_label(self, label: str) -> int:
        """Add a label (an entity type, or a token tag). Returns 1 if new, else 0.

        On a trained component the output layer (and the CRF transitions)
        grow by the new label's tags, keeping every existing weight. Until an
        update's gold annotation holds the new label, its tags are left out
        of decoding (as spaCy's parser does with unseen actions), so the old
        labels are predicted exactly as before. Create a new optimizer after
        adding labels (nlp.create_optimizer()): an optimizer's state is
        shaped like the weights it has updated.
        """
        self._check_label(label)
        if label in self.labels:
            return 0
        n_tags = len(self.tags)
        self._append_label(label)
        if self._is_initialized():
            self.cfg.setdefault("unseen_labels", []).append(label)
            # The rehearsal model keeps its width: rehearsal then constrains
            # only the tags it knew, and leaves the new ones free.
            _resize_output(self.model, n_tags, len(self.tags))
        return 1

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """As TrainablePipe.pipe (docs in order, the pipeline's error handler on
        failure), with each batch predicted in parts of at most `batch_words` words."""
        error_handler = self.get_error_handler()
        for batch in util.minibatch(stream, size=batch_size):
            for docs in word_batches(batch, self.batch_words):
                try:
                    self.set_annotations(docs, self.predict(docs))
                    yield from docs
                except Exception as e:
                    error_handler(self.name, self, docs, e)

    def _unseen_tag_columns(self) -> List[int]:
        """The output columns of labels added to a trained model and not yet
        seen in an update's gold annotation."""
        unseen = set(self.cfg.get("unseen_labels", ()))
        if not unseen:
            return []
        return [i for i, label in enumerate(self.lattice.tag_labels) if label in unseen]

    def _mark_seen(self, examples: List[Example]) -> None:
        if self.cfg.get("unseen_labels"):
            seen = set(self._labels_in([eg.reference for eg in examples if self._has_gold(eg.reference)]))
            self.cfg["unseen_labels"] = [label for label in self.cfg["unseen_labels"] if label not in seen]

    def _check_label(self, label: object) -> None:
        # spaCy takes any string as a label; an empty one cannot label a Span or token.
        if not isinstance(label, str) or not label:
            raise ValueError(self._invalid_label(label))

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

    def _checked_docs(self, docs: Iterable[Doc]) -> List[Doc]:
        """`docs` as a list, once the component is known to be initialized and
        the docs to share its language."""
        docs = list(docs)
        self._require_initialized()
        self._check_vocab(docs)
        return docs

    def _check_vocab(self, docs: Sequence[Doc]) -> None:
        for doc in docs:
            if doc.vocab is not self.vocab and doc.vocab.lang != self.vocab.lang:
                raise ValueError(
                    f"[{self.name}] A doc was made with a vocab for language "
                    f"'{doc.vocab.lang or 'none'}', but this pipeline's is '{self.vocab.lang}', so "
                    "its word features would not match the trained ones. Make docs with "
                    "nlp.make_doc(text), nlp(text) or Doc(nlp.vocab, words=...)."
                )

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
        examples = list(examples)
        validate_examples(examples, f"{type(self).__name__}.update")
        self._mark_seen(examples)
        return self._step(examples, drop, sgd, losses, f"{type(self).__name__}.update", self.get_loss)

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
        return self._step(examples, drop, sgd, losses, f"{type(self).__name__}.rehearse", self._rehearsal_loss)

    def _rehearsal_loss(self, examples: List[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """Distillation from the kept model: per token, the cross-entropy of
        the current tag distribution against the kept model's, over the tags
        the kept model has. Its gradient is bounded by 1 per score, like the
        update's own loss, so a rehearsal step weighs as much as an update
        (a squared error on raw scores grew with the scores' scale and
        outweighed the update, which made forgetting worse)."""
        targets = self._rehearsal_model.predict([eg.predicted for eg in examples])  # type: ignore[union-attr]
        ops = self.model.ops
        d_scores, loss = [], 0.0
        for score, target in zip(scores, targets):
            n = target.shape[1]
            d = ops.alloc2f(*score.shape)
            if score.shape[0]:
                guess, truth = self._tag_distribution(score[:, :n]), self._tag_distribution(target)
                d[:, :n] = guess - truth
                loss += float(-(truth * ops.xp.log(ops.xp.maximum(guess, 1e-12))).sum())
            d_scores.append(d)
        return loss, d_scores

    def _tag_distribution(self, scores: Floats2d) -> Floats2d:
        """Per-token probabilities over the columns of `scores`: a CRF's
        emissions are logits; a softmax output's rows are probabilities
        already (renormalized, since the columns may be a subset)."""
        ops = self.model.ops
        if self.uses_crf:
            return ops.softmax(scores, axis=-1)
        return scores / ops.xp.maximum(scores.sum(axis=-1, keepdims=True), 1e-12)

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

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """The loss against the aligned gold tags (cross-entropy, or the CRF's
        negative log-likelihood); unannotated tokens add nothing."""
        validate_examples(examples, f"{type(self).__name__}.get_loss")
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
        """Set the labels (given, or read off the examples' annotation) and allocate the weights."""
        validate_get_examples(get_examples, f"{type(self).__name__}.initialize")
        examples = list(islice(get_examples(), 0, None))
        annotated = [eg for eg in examples if self._has_gold(eg.reference)]
        if labels is None:
            labels = self._labels_in([eg.reference for eg in annotated])
        # Initialization (re)builds the output layer, so labels may be added here
        # even if the component was initialized before.
        for label in labels:
            self._append_label(label)
        self.cfg.pop("unseen_labels", None)  # every output column is new
        if not self.labels:
            raise ValueError(self._no_labels(len(examples), len(annotated)))
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
    # Saved as TrainablePipe saves: cfg, vocab and model. The weights are
    # packed as the `storage` setting says (ml/storage.py), and cfg holds a
    # SHA-256 over the stored weights, the labels and the scheme (thinc and
    # torch load flipped bytes inside a weight array without complaint, and
    # reordered labels would swap the types predicted). Loading keeps the
    # config's settings.

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        """Serialize the settings, vocab and weights (with their checksum) to bytes."""
        model_bytes = self._stored_model_bytes()
        serialize = {
            "cfg": lambda: srsly.json_dumps(self.cfg),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: model_bytes,
        }
        return util.to_bytes(serialize, exclude)

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the settings, vocab and weights (with their checksum) to a directory."""
        model_bytes = self._stored_model_bytes()
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self.cfg),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: Path(p).write_bytes(model_bytes),
        }
        util.to_disk(path, serialize, exclude)

    def _stored_model_bytes(self) -> bytes:
        """The weights as they are stored, with their checksum set in cfg."""
        model_bytes = pack_model_bytes(self.model, self.cfg["storage"])
        self.cfg["checksum"] = _checksum(model_bytes, self.labels, self.lattice_scheme)
        return model_bytes

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SequenceLabeller":
        """Load from bytes, with a clear error when the data is truncated, corrupted or edited."""
        return self._load(
            lambda: srsly.msgpack_loads(bytes_data),
            lambda extra: super(SequenceLabeller, self).from_bytes(bytes_data, exclude=[*exclude, *extra]),
            "the given bytes",
        )

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "SequenceLabeller":
        """Load from a directory, with a clear error when a file is truncated, corrupted or edited."""
        path = Path(path)

        def parts() -> Dict:
            return {"cfg": (path / "cfg").read_bytes(), "model": (path / "model").read_bytes()}

        return self._load(parts, lambda extra: super(SequenceLabeller, self).from_disk(path, exclude=[*exclude, *extra]), str(path))

    def _load(self, read_parts: Callable[[], Dict], load: Callable[[List[str]], object], where: str) -> "SequenceLabeller":
        """Check the saved parts, then let TrainablePipe load them (`load`, given
        the parts to leave out); restore the config's settings afterwards."""
        try:
            parts = read_parts()
            saved = srsly.json_loads(parts["cfg"]) if isinstance(parts["cfg"], (bytes, str)) else parts["cfg"]
            model_bytes = parts["model"]
        except Exception as err:
            raise self._load_error(where, err) from err
        problem = _verify(saved, model_bytes, self.lattice_scheme)
        if problem:
            raise self._load_error(where, ValueError(problem))
        try:
            load(["model"])
            if "checksum" in saved:
                self.model.from_dict(unpack_model_msg(model_bytes))
            else:  # saved by an earlier release: its model bytes may need upgrading
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


def word_batches(docs: Sequence[Doc], max_words: int) -> Iterator[List[Doc]]:
    """`docs` in order, in consecutive lists of at most `max_words` words
    (a doc longer than that alone). Not spaCy's minibatch_by_words (spacy.training.batchers): it
    yields an oversized doc ahead of the batch it is collecting, and
    nlp.pipe must give the docs back in order."""
    part: List[Doc] = []
    words = 0
    for doc in docs:
        if part and words + len(doc) > max_words:
            yield part
            part, words = [], 0
        part.append(doc)
        words += len(doc)
    if part:
        yield part


def _resize_output(model: Model, old: int, new: int) -> None:
    """Grow the output layer and the CRF transitions from `old` to `new` tags,
    keeping the existing weights (new tags are appended at the end)."""
    output = model.get_ref("output")
    ops = output.ops
    W, b = output.get_param("W"), output.get_param("b")
    new_W = ops.alloc2f(new, W.shape[1])
    new_W[:old] = W
    # Zero weights and the mean trained bias: a neutral start for the new
    # columns, which decoding leaves out until their label is seen in training.
    new_b = ops.alloc1f(new) + (float(b.mean()) if old else 0.0)
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

