"""The `rnn_token_tagger` pipeline component: the same BiLSTM models as
`rnn_tagger`, labelling each token with one tag (part-of-speech, chunk or any
per-token label) instead of entity spans.

Docs in, `token.tag_` (or `token.pos_`, or a custom extension) out. With a CRF
model the tags are decoded by Viterbi over learned, unconstrained transitions;
with a softmax model each token takes its most probable tag.
"""
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy
from spacy.language import Language
from spacy.parts_of_speech import IDS as UPOS_IDS
from spacy.scorer import Scorer
from spacy.tokens import Doc, Token
from spacy.training import Example
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Model
from thinc.types import Floats2d, Ints1d

from .labeller import SequenceLabeller
from .lattice import IMPOSSIBLE, TOKEN_TAGS
from .rnn_tagger import DEFAULT_MODEL

TARGETS = ("tag", "pos")


@Language.factory(
    "rnn_token_tagger",
    assigns=["token.tag"],
    default_config={
        "model": DEFAULT_MODEL,
        "attr": "tag",
        "int8_inference": False,
        "storage": "float32",
        "lstm_runtime": "auto",
        "scorer": {"@scorers": "spacy_rnn_ner.token_tagger_scorer.v1"},
    },
    default_score_weights={"tag_acc": 0.5, "pos_acc": 0.5},
)
def make_rnn_token_tagger(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    attr: str,
    scorer: Optional[Callable],
    int8_inference: bool = False,
    storage: str = "float32",
    lstm_runtime: str = "auto",
) -> "RNNTokenTagger":
    """Create an `rnn_token_tagger`: a BiLSTM that gives each token one tag.

    model: a thinc model mapping docs to per-token tag scores (the same
        architectures as rnn_tagger: softmax, or a CRF whose transitions are
        learned without constraints).
    attr: where the tag goes and where the gold is read: "tag" (token.tag_,
        scored as tag_acc), "pos" (token.pos_, Universal POS tags only, scored
        as pos_acc) or "_.NAME" (a token extension, scored as NAME_acc).
    scorer: token accuracy on `attr`; spacy_rnn_ner.token_tagger_scorer.v1 by default.
    int8_inference: predict with an int8 copy of the LSTM.
    storage: how the weights are saved: "float32" (exact), "float16", or
        "int8" (about a third of the size on disk; see ml/storage.py).
    lstm_runtime: "auto", "onnxruntime" or "torch": as for rnn_tagger.
    """
    return RNNTokenTagger(
        nlp.vocab,
        model,
        name,
        attr=attr,
        scorer=scorer,
        int8_inference=int8_inference,
        storage=storage,
        lstm_runtime=lstm_runtime,
    )


@registry.scorers("spacy_rnn_ner.token_tagger_scorer.v1")
def make_token_tagger_scorer() -> Callable:
    """Token accuracy on the component's `attr`: tag_acc, pos_acc or NAME_acc, as spaCy's tagger scores."""
    return score_token_tags


def score_token_tags(examples: Iterable[Example], attr: str = "tag", **kwargs) -> Dict[str, Optional[float]]:
    """Accuracy of the predicted tokens' `attr` against the gold (misaligned tokens are skipped)."""
    if attr.startswith("_."):
        name = attr[2:]
        return Scorer.score_token_attr(examples, name, getter=lambda token, _: token._.get(name), **kwargs)
    return Scorer.score_token_attr(examples, attr, **kwargs)


class RNNTokenTagger(SequenceLabeller):
    """Give every token one tag from the label set."""

    SETTINGS = SequenceLabeller.SETTINGS + ("attr",)

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "rnn_token_tagger",
        *,
        attr: str = "tag",
        scorer: Optional[Callable] = None,
        int8_inference: bool = False,
        storage: str = "float32",
        lstm_runtime: str = "auto",
    ) -> None:
        if attr not in TARGETS and not (attr.startswith("_.") and len(attr) > 2):
            raise ValueError(
                f"[{name}] attr must be 'tag', 'pos' or a token extension written '_.NAME', got {attr!r}."
            )
        if attr.startswith("_.") and not Token.has_extension(attr[2:]):
            Token.set_extension(attr[2:], default=None)
        super().__init__(
            vocab,
            model,
            name,
            {"attr": attr},
            scorer=scorer,
            int8_inference=int8_inference,
            storage=storage,
            lstm_runtime=lstm_runtime,
        )

    @property
    def attr(self) -> str:
        return self.cfg["attr"]

    @property
    def lattice_scheme(self) -> str:
        return TOKEN_TAGS

    # -- labels and gold ---------------------------------------------------

    def _invalid_label(self, label: object) -> str:
        if isinstance(label, str) and label and self.attr == "pos":
            return (
                f"[{self.name}] Invalid tag {label!r} for attr 'pos': token.pos_ takes only "
                f"Universal POS tags ({', '.join(sorted(k for k in UPOS_IDS if k.isupper() and k != 'EOL'))}). "
                "Use attr = \"tag\" for a language- or corpus-specific tag set."
            )
        return f"[{self.name}] Invalid tag {label!r}: a tag must be a non-empty string."

    def _check_label(self, label: object) -> None:
        super()._check_label(label)
        if self.attr == "pos" and label not in UPOS_IDS:
            raise ValueError(self._invalid_label(label))

    def _values(self, doc: Doc) -> List[Optional[str]]:
        """The doc's `attr` per token, None where unset."""
        if self.attr.startswith("_."):
            name = self.attr[2:]
            return [token._.get(name) or None for token in doc]
        if self.attr == "tag":
            return [token.tag_ or None for token in doc]
        return [token.pos_ or None for token in doc]

    def _has_gold(self, doc: Doc) -> bool:
        if self.attr in TARGETS:
            return doc.has_annotation(self.attr.upper())
        return any(value is not None for value in self._values(doc))

    def _labels_in(self, references: List[Doc]) -> List[str]:
        return sorted({value for doc in references for value in self._values(doc) if value is not None})

    def _no_labels(self, n_examples: int, n_annotated: int) -> str:
        return (
            f"[{self.name}] No tags: none of the {n_examples} initialization examples sets "
            f"token {self.attr!r}. Give the tags (add_label, or [initialize.components.{self.name}.labels]), "
            "or train on data whose tokens carry them (scripts/convert.py --tag-column N keeps a CoNLL column as token.tag_)."
        )

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        """The gold tag of each predicted token; None where the tokens do not align,
        the gold has no tag, or the tag is not one of the labels."""
        known = self.lattice.index
        if self.attr in TARGETS:
            gold = example.get_aligned(self.attr.upper(), as_string=True)
        else:
            values = self._values(example.reference)
            gold = [values[i[0]] if len(i) == 1 else None for i in example.alignment.x2y]
        return [tag if tag in known else None for tag in gold]

    # -- prediction ------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> List[Ints1d]:
        """The best tag sequence of each doc: Viterbi for a CRF, argmax for softmax."""
        docs = self._checked_docs(docs)
        if not any(len(doc) for doc in docs):
            return [numpy.zeros((0,), dtype="i") for _ in docs]
        ops = self.model.ops
        scores = [ops.to_numpy(s) for s in self.model.predict(docs)]
        unseen = self._unseen_tag_columns()
        if unseen:  # tags added to the trained model and not yet trained on
            for s in scores:
                s[:, unseen] = IMPOSSIBLE
        if self.uses_crf:
            return self.lattice.decode(scores, self._transitions())
        return [s.argmax(axis=1).astype("i") if len(s) else numpy.zeros((0,), dtype="i") for s in scores]

    def set_annotations(self, docs: Iterable[Doc], tag_ids: Sequence[Ints1d]) -> None:
        """Write each token's tag to `attr`."""
        tags = self.tags
        extension = self.attr[2:] if self.attr.startswith("_.") else None
        for doc, ids in zip(docs, tag_ids):
            for token, i in zip(doc, ids):
                if extension is not None:
                    token._.set(extension, tags[i])
                elif self.attr == "tag":
                    token.tag_ = tags[i]
                else:
                    token.pos_ = tags[i]
