"""The `rnn_tagger` pipeline component: an ner-style TrainablePipe over
per-token tag scores, decoded into valid entity spans.

Docs in, `doc.ents` and `doc.spans[spans_key]` out. The model (ml/) maps
docs to per-token tag scores; the tag lattice (lattice.py) turns scores into
tag paths, entity confidences and the CRF loss; what every sequence labeller
does (labels, training, serialization) is in labeller.py; this module knows
about entities: their gold, decoding constraints, confidences and doc.ents.
"""
import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

import numpy
from spacy.attrs import ENT_IOB, ENT_TYPE, IS_SPACE, ORTH, SPACY
from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d, Ints1d

from .labeller import SequenceLabeller
from .lattice import IMPOSSIBLE, Span3, biluo_to_scheme, check_scheme

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
# Values of Token.ent_iob: 1 inside an entity, 2 outside, 3 at its start.
_IOB_INSIDE, _IOB_OUTSIDE, _IOB_BEGIN = 1, 2, 3


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
        "storage": "float32",
        "lstm_runtime": "auto",
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
    storage: str = "float32",
    lstm_runtime: str = "auto",
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
    storage: how the weights are saved: "float32" (exact), "float16", or
        "int8" (about a third of the size on disk; see ml/storage.py).
    lstm_runtime: "auto" (default) runs the LSTM over a single sentence in
        ONNX Runtime where it is installed (the `onnx` extra; faster for one
        sentence, same outputs to 1e-5), "onnxruntime" requires it, "torch"
        never uses it. Batches always run in torch.
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
        storage=storage,
        lstm_runtime=lstm_runtime,
    )


class DocPrediction(NamedTuple):
    """What `predict` returns per doc: tag ids, entity spans (start, end, label) and their confidences."""

    tag_ids: Ints1d
    spans: List[Span3]
    scores: List[float]


class RNNTagger(SequenceLabeller):
    """Label every token with an entity tag and decode valid spans into `doc.ents`."""

    SETTINGS = SequenceLabeller.SETTINGS + ("scheme", "spans_key", "threshold", "temperature", "overwrite_ents")

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
        storage: str = "float32",
        lstm_runtime: str = "auto",
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"[{name}] threshold must be between 0 and 1, got {threshold}.")
        if temperature <= 0:
            raise ValueError(f"[{name}] temperature must be positive, got {temperature}.")
        cfg = {
            "scheme": check_scheme(scheme),
            "spans_key": spans_key,
            "threshold": threshold,
            "temperature": temperature,
            "overwrite_ents": bool(overwrite_ents),
        }
        super().__init__(
            vocab, model, name, cfg, scorer=scorer, int8_inference=int8_inference, storage=storage, lstm_runtime=lstm_runtime
        )

    # -- labels and gold ---------------------------------------------------

    @property
    def scheme(self) -> str:
        return self.cfg["scheme"]

    @property
    def lattice_scheme(self) -> str:
        return self.scheme

    def _invalid_label(self, label: object) -> str:
        return (
            f"[{self.name}] Invalid entity label {label!r}: a label must be a non-empty "
            "string (spaCy's doc.ents cannot hold an empty label). Any other string "
            "works, with '-', spaces or tag-like prefixes such as 'B-thing'."
        )

    def _has_gold(self, doc: Doc) -> bool:
        return doc.has_annotation("ENT_IOB")

    def _labels_in(self, references: List[Doc]) -> List[str]:
        return sorted({ent.label_ for doc in references for ent in doc.ents})

    def _no_labels(self, n_examples: int, n_annotated: int) -> str:
        if not n_annotated:
            return (
                f"[{self.name}] No labels, and none of the {n_examples} initialization "
                "examples holds any entity annotation (no token is marked as inside or "
                "outside an entity), so there is nothing to learn the labels from. Give "
                f"the labels (add_label, or [initialize.components.{self.name}.labels] as "
                "`spacy init labels` writes them), or check that your training corpus sets "
                "doc.ents (for CoNLL files, convert them with scripts/convert.py) and that "
                "[paths.train] points at the right file."
            )
        return (
            f"[{self.name}] No entity labels: the examples mark every token as outside "
            "an entity. Add labels with [initialize.components."
            f"{self.name}.labels] or train on data that contains entities."
        )

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        """The example's gold tags in our scheme, None where there is no usable gold.

        spaCy marks tokens without annotation as None and tokens whose gold
        boundaries do not align with the predicted tokens as '-'; entity types
        this component does not know are treated as unannotated too.
        """
        known = self.lattice.index
        gold = _same_tokens_ner(example.predicted, example.reference)
        if gold is None:
            gold = _ALIGNED_NER.get(example)
        gold = biluo_to_scheme(gold, self.scheme)
        return [tag if tag in known else None for tag in gold]


    # -- prediction ------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        """Decode the best valid tag sequence of each doc and score its entities."""
        docs = self._checked_docs(docs)
        if not any(len(doc) for doc in docs):
            return [DocPrediction(numpy.zeros((0,), dtype="i"), [], []) for _ in docs]
        return self.decode_docs(docs, self.model.predict(docs))

    def decode_docs(self, docs: Sequence[Doc], scores: Sequence[Floats2d]) -> List[DocPrediction]:
        """`decode` the model's scores for `docs` under each doc's constraints
        (preset entities, whitespace tokens)."""
        unseen = self._unseen_tag_columns()
        return self.decode(scores, [self._token_constraints(doc, unseen) for doc in docs])

    def _token_constraints(self, doc: Doc, unseen: Sequence[int] = ()) -> Optional[numpy.ndarray]:
        """The tags each token may take, or None where all may.

        Tokens of entities set by earlier components stay outside the tagger's
        own entities (unless overwrite_ents), a whitespace token is never the
        first or last token of an entity, as in spaCy's ner, and no token takes
        a tag of a label added to the trained model but not yet trained on
        (`unseen`, its tag columns).
        """
        if not len(doc):
            return None
        flags = doc.to_array([IS_SPACE, ENT_IOB])
        space = flags[:, 0] == 1
        preset = ((flags[:, 1] == _IOB_INSIDE) | (flags[:, 1] == _IOB_BEGIN)) & (not self.cfg["overwrite_ents"])
        if not space.any() and not preset.any() and not len(unseen):
            return None
        lattice = self.lattice
        mask = numpy.ones((len(doc), lattice.n_tags), dtype=bool)
        # BIO cannot tell a whitespace token that ends an entity from one inside it.
        mask[space] = lattice.masks_for(["O", "I"] if self.scheme == "BILUO" else ["O"])
        mask[preset] = lattice.masks_for(["O"])
        mask[:, list(unseen)] = False  # labels added since training, not yet learned
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



def save_with_settings(model: Union[str, Path], output: Union[str, Path], name: str, settings: Dict) -> Language:
    """Save the pipeline at `model` to `output` with new settings for component
    `name` (e.g. {"temperature": 1.5}), written into the saved config.cfg so
    that the config stays the one source of truth. Returns the loaded pipeline."""
    import spacy

    nlp = spacy.load(model, config={"components": {name: dict(settings)}})
    nlp.to_disk(output)
    return nlp


def _same_tokens_ner(predicted: Doc, reference: Doc) -> Optional[List[Optional[str]]]:
    """`Example.get_aligned_ner()` for a predicted doc whose tokens are the
    reference's (the same token strings and whitespace), or None for any other pair.

    spaCy's version aligns the two token lists string by string and walks
    every token in Python several times, about 4% of a training step; most
    training docs keep the corpus's tokens (and raw text of a tokenized
    corpus mostly comes out the same). The rules are spaCy's: an entity's
    tokens get its BILUO tags, tokens marked outside and whitespace tokens
    get "O", and tokens without annotation get None. A test compares the two.
    """
    if len(predicted) != len(reference):
        return None
    # The same token strings with the same trailing whitespace: the same text, token for token.
    if not numpy.array_equal(predicted.to_array([ORTH, SPACY]), reference.to_array([ORTH, SPACY])):
        return None
    if not reference.has_annotation("ENT_IOB"):
        return [None] * len(predicted)
    outside = (reference.to_array(ENT_IOB) == _IOB_OUTSIDE) | (predicted.to_array(IS_SPACE) == 1)
    tags: List[Optional[str]] = ["O" if out else None for out in outside.tolist()]
    for ent in reference.ents:
        label = ent.label_
        if len(ent) == 1:
            tags[ent.start] = f"U-{label}"
        else:
            tags[ent.start] = f"B-{label}"
            tags[ent.start + 1 : ent.end - 1] = [f"I-{label}"] * (len(ent) - 2)
            tags[ent.end - 1] = f"L-{label}"
    return tags


class _AlignedNERCache:
    """`Example.get_aligned_ner()` per pair of docs, keyed by content.

    spaCy's Language.update copies each example, so the string alignment of
    a predicted doc whose tokens differ from the reference's (raw text read
    by our tokenizer) was computed again on every epoch: about 5% of a
    training step. The tags depend only on both docs' token strings and
    whitespace and the reference's entity annotation, which the key hashes.
    The most recent pairs are kept, up to `max_tokens` tags in all (about
    8 bytes each), so long documents cannot make it grow without bound.
    """

    def __init__(self, max_tokens: int = 1_000_000) -> None:
        self.max_tokens = max_tokens
        self.n_tokens = 0
        self.entries: "OrderedDict[bytes, List[Optional[str]]]" = OrderedDict()

    def get(self, example: Example) -> List[Optional[str]]:
        predicted, reference = example.predicted, example.reference
        key = hashlib.blake2b(digest_size=16)
        key.update(numpy.array([len(predicted), len(reference)], dtype="int64").tobytes())
        key.update(predicted.to_array([ORTH, SPACY]).tobytes())
        key.update(reference.to_array([ORTH, SPACY, ENT_IOB, ENT_TYPE]).tobytes())
        digest = key.digest()
        tags = self.entries.get(digest)
        if tags is None:
            tags = example.get_aligned_ner()
            if len(tags) <= self.max_tokens:
                self.entries[digest] = tags
                self.n_tokens += len(tags)
                while self.n_tokens > self.max_tokens:
                    self.n_tokens -= len(self.entries.popitem(last=False)[1])
        else:
            self.entries.move_to_end(digest)
        return list(tags)


_ALIGNED_NER = _AlignedNERCache()
