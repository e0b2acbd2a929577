"""Read CoNLL-style column files (token first, NER tag last) into spaCy Docs.

The reader keeps document structure (``-DOCSTART-`` lines start a new document),
marks sentence boundaries on the Doc and sets ``doc.ents`` from the tags. It
understands IOB1 (CoNLL-2003), IOB2/BIO and BILUO/BIOES tags and can detect
which one a file uses. Broken input raises :class:`ConllFormatError` (a
``ValueError``) naming the file and the 1-based line number.

This module deliberately imports nothing from the rest of the package, so it
can be used (e.g. by ``scripts/convert.py``) without the model code.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.vocab import Vocab

__all__ = [
    "SCHEMES",
    "DOCSTART",
    "ConllFormatError",
    "ConllToken",
    "ConllFile",
    "ConllStats",
    "parse_conll",
    "detect_scheme",
    "tags_to_spans",
    "build_docs",
    "normalize_scheme",
    "read_conll",
    "read_conll_text",
]

DOCSTART = "-DOCSTART-"
"""First column of a line that starts a new document."""

SCHEMES: Tuple[str, ...] = ("auto", "iob1", "iob2", "biluo")
"""Scheme names accepted by :func:`read_conll` (aliases: bio, iob, bioes, iobes)."""

_SCHEME_ALIASES: Dict[str, str] = {
    "auto": "auto",
    "iob1": "iob1",
    "iob2": "iob2",
    "bio": "iob2",
    "iob": "iob2",
    "biluo": "biluo",
    "bioes": "biluo",
    "iobes": "biluo",
}

# E-/S- (BIOES/IOBES) are read as the BILUO prefixes L-/U-.
_PREFIX_ALIASES: Dict[str, str] = {"E": "L", "S": "U"}
_VALID_PREFIXES = frozenset("BILUES")
_BILUO_ONLY_PREFIXES = frozenset("LUES")

_COLUMN_SEP = re.compile(r"[ \t]+")
_EDGE_WHITESPACE = " \t\r\n\f\v"

Source = Union[str, "os.PathLike[str]", Iterable[str]]
Span3 = Tuple[int, int, str]


class ConllFormatError(ValueError):
    """A problem in the input, located by file name and 1-based line number."""

    def __init__(self, problem: str, *, line_no: int, line: str, source: Optional[str] = None):
        self.problem = problem
        self.line_no = line_no
        self.line = line
        self.source = source
        where = f"{source}, line {line_no}" if source else f"line {line_no}"
        super().__init__(f"{where}: {problem}\n    {line!r}")


class ConllToken(NamedTuple):
    """One token line: the word, its raw NER tag, where it came from, and the
    columns between the word and the NER tag (CoNLL-2003: part-of-speech, chunk)."""

    text: str
    tag: str
    line_no: int
    middle: Tuple[str, ...] = ()


ConllSentence = List[ConllToken]
ConllDocument = List[ConllSentence]


@dataclass
class ConllFile:
    """Parsed column file: documents of sentences of tokens, before tag decoding."""

    documents: List[ConllDocument]
    has_docstart: bool = False
    source: Optional[str] = None

    def sentences(self) -> Iterator[ConllSentence]:
        """Yield every sentence in file order, across documents."""
        for document in self.documents:
            yield from document


@dataclass
class ConllStats:
    """Corpus counts, computed from the built Docs so they describe what is saved."""

    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    entities_per_label: Dict[str, int] = field(default_factory=dict)

    @property
    def entities(self) -> int:
        """Total number of entity spans over all labels."""
        return sum(self.entities_per_label.values())

    @classmethod
    def from_docs(cls, docs: Iterable[Doc]) -> "ConllStats":
        """Count documents, sentences, tokens and entities per label in ``docs``."""
        stats = cls()
        for doc in docs:
            stats.documents += 1
            stats.tokens += len(doc)
            stats.sentences += sum(1 for _ in doc.sents) if len(doc) else 0
            for ent in doc.ents:
                stats.entities_per_label[ent.label_] = stats.entities_per_label.get(ent.label_, 0) + 1
        return stats

    def format(self, name: Optional[str] = None) -> str:
        """One readable line, e.g. ``train: 946 documents, ... (LOC 7,140, ...)``."""
        parts = [
            _plural(self.documents, "document"),
            _plural(self.sentences, "sentence"),
            _plural(self.tokens, "token"),
            _plural(self.entities, "entity", "entities"),
        ]
        text = ", ".join(parts)
        if self.entities_per_label:
            labels = ", ".join(f"{label} {count:,}" for label, count in sorted(self.entities_per_label.items()))
            text += f" ({labels})"
        return f"{name}: {text}" if name else text

    def __str__(self) -> str:
        """Same as :meth:`format` without a name."""
        return self.format()


def _plural(count: int, singular: str, plural: Optional[str] = None) -> str:
    """Format ``count`` with a thousands separator and the right noun form."""
    noun = singular if count == 1 else (plural or singular + "s")
    return f"{count:,} {noun}"


def normalize_scheme(scheme: str) -> str:
    """Map a scheme name or alias (case-insensitive) to auto/iob1/iob2/biluo."""
    key = scheme.strip().lower()
    if key not in _SCHEME_ALIASES:
        options = ", ".join(sorted(_SCHEME_ALIASES))
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of: {options}")
    return _SCHEME_ALIASES[key]


def _check_tag(tag: str) -> Optional[str]:
    """Return why ``tag`` is not ``O`` or ``PREFIX-TYPE``, or None when it is valid."""
    if tag == "O":
        return None
    prefix, sep, label = tag.partition("-")
    if not sep or len(prefix) != 1 or prefix not in _VALID_PREFIXES or not label:
        return (
            f"invalid NER tag {tag!r}: expected 'O' or PREFIX-TYPE "
            "with PREFIX one of B, I, L, U, E, S (e.g. B-PER)"
        )
    return None


def _open_lines(source: Source) -> Tuple[Iterable[str], Optional[str], bool]:
    """Turn a path or an iterable of lines into (lines, display name, must close)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return open(path, encoding="utf-8-sig"), str(source), True
    return source, getattr(source, "name", None), False


def parse_conll(source: Source, *, source_name: Optional[str] = None) -> ConllFile:
    """Split a column file into documents/sentences/tokens, checking columns and tag syntax.

    ``source`` is a path (str or PathLike) or any iterable of text lines, e.g.
    ``io.StringIO(text)``. A ``-DOCSTART-`` line in any form starts a new
    document; blank or whitespace-only lines end a sentence.
    """
    lines, name, must_close = _open_lines(source)
    name = source_name or name
    documents: List[ConllDocument] = []
    document: ConllDocument = []
    sentence: ConllSentence = []
    has_docstart = False
    try:
        for line_no, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if sentence:
                    document.append(sentence)
                    sentence = []
                continue
            columns = _COLUMN_SEP.split(line.strip(_EDGE_WHITESPACE))
            if columns[0] == DOCSTART:
                has_docstart = True
                if sentence:
                    document.append(sentence)
                    sentence = []
                if document:
                    documents.append(document)
                    document = []
                continue
            if len(columns) < 2:
                raise ConllFormatError(
                    "expected at least two columns: TOKEN ... TAG "
                    "(token first, NER tag last, separated by spaces or tabs), got one",
                    line_no=line_no,
                    line=line,
                    source=name,
                )
            tag = columns[-1]
            problem = _check_tag(tag)
            if problem:
                raise ConllFormatError(problem, line_no=line_no, line=line, source=name)
            sentence.append(ConllToken(columns[0], tag, line_no, tuple(columns[1:-1])))
    finally:
        if must_close:
            lines.close()  # type: ignore[union-attr]
    if sentence:
        document.append(sentence)
    if document:
        documents.append(document)
    return ConllFile(documents=documents, has_docstart=has_docstart, source=name)


def _split_tag(tag: str) -> Tuple[str, str]:
    """Split a checked tag into (prefix, label) with E/S mapped to L/U; ``O`` gives ('O', '')."""
    if tag == "O":
        return "O", ""
    prefix, _, label = tag.partition("-")
    return _PREFIX_ALIASES.get(prefix, prefix), label


def detect_scheme(sentences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of tag sequences: biluo if any L/U/E/S, iob1 if any I-X starts a span, else iob2.

    An ``I-X`` that follows ``O``, another type or the sentence start is legal in
    IOB1 but not in IOB2, so one such tag is enough to call the file IOB1.
    """
    starts_with_i = False
    for tags in sentences:
        previous = ("O", "")
        for tag in tags:
            prefix, label = _split_tag(tag)
            if prefix in _BILUO_ONLY_PREFIXES:
                return "biluo"
            if prefix == "I" and (previous[0] == "O" or previous[1] != label):
                starts_with_i = True
            previous = (prefix, label)
    return "iob1" if starts_with_i else "iob2"


class _SequenceError(Exception):
    """Internal: an invalid tag sequence at a position in one sentence."""

    def __init__(self, index: int, problem: str):
        super().__init__(problem)
        self.index = index
        self.problem = problem


def _decode_iob(tags: Sequence[str], strict: bool) -> List[Span3]:
    """Decode IOB1 (``strict=False``) or IOB2 (``strict=True``) tags into (start, end, label) spans.

    In IOB1 an ``I-X`` that does not continue an ``X`` span starts one; IOB2
    requires a ``B-X`` there. A ``B-X`` always starts a new span in both.
    """
    spans: List[Span3] = []
    start, label = -1, ""
    for i, tag in enumerate(tags):
        prefix, tag_label = _split_tag(tag)
        if prefix in _BILUO_ONLY_PREFIXES:
            scheme = "IOB2" if strict else "IOB1"
            raise _SequenceError(i, f"tag {tag!r} is not valid in the {scheme} scheme (only B-, I- and O)")
        continues = prefix == "I" and start >= 0 and tag_label == label
        if continues:
            continue
        if prefix == "I" and strict:
            after = f"'{tags[i - 1]}'" if i else "the sentence start"
            raise _SequenceError(i, f"invalid IOB2 sequence: {tag!r} after {after}; an entity must start with B-")
        if start >= 0:
            spans.append((start, i, label))
            start, label = -1, ""
        if prefix in ("B", "I"):
            start, label = i, tag_label
    if start >= 0:
        spans.append((start, len(tags), label))
    return spans


def _decode_biluo(tags: Sequence[str]) -> List[Span3]:
    """Decode strict BILUO tags (E-/S- read as L-/U-) into (start, end, label) spans."""
    spans: List[Span3] = []
    start, label = -1, ""
    for i, tag in enumerate(tags):
        prefix, tag_label = _split_tag(tag)
        inside = start >= 0
        if prefix in ("I", "L"):
            if not inside or tag_label != label:
                raise _SequenceError(i, f"invalid BILUO sequence: {tag!r} must follow B-{tag_label} or I-{tag_label}")
            if prefix == "L":
                spans.append((start, i + 1, label))
                start, label = -1, ""
            continue
        if inside:
            raise _SequenceError(i, f"invalid BILUO sequence: {tag!r} while entity B-{label} is still open (needs L-{label})")
        if prefix == "B":
            start, label = i, tag_label
        elif prefix == "U":
            spans.append((i, i + 1, tag_label))
    if start >= 0:
        raise _SequenceError(len(tags) - 1, f"invalid BILUO sequence: sentence ends inside entity B-{label} (needs L-{label})")
    return spans


def _decode(tags: Sequence[str], scheme: str) -> List[Span3]:
    """Decode one sentence's tags with an explicit (non-auto) normalized scheme."""
    if scheme == "biluo":
        return _decode_biluo(tags)
    return _decode_iob(tags, strict=scheme == "iob2")


def tags_to_spans(tags: Sequence[str], scheme: str = "auto") -> List[Span3]:
    """Decode one sentence's tags into (start, end, label) token spans, end exclusive.

    Raises ``ValueError`` naming the 1-based position for bad tags or sequences.
    """
    for i, tag in enumerate(tags):
        problem = _check_tag(tag)
        if problem:
            raise ValueError(f"position {i + 1}: {problem}")
    scheme = normalize_scheme(scheme)
    if scheme == "auto":
        scheme = detect_scheme([tags])
    try:
        return _decode(tags, scheme)
    except _SequenceError as err:
        raise ValueError(f"position {err.index + 1}: {err.problem}") from None


def _resolve_vocab(vocab_or_lang: Union[str, Vocab, Language]) -> Vocab:
    """Accept a Vocab, a Language or a language code and return the Vocab to build Docs with."""
    if isinstance(vocab_or_lang, Vocab):
        return vocab_or_lang
    if isinstance(vocab_or_lang, Language):
        return vocab_or_lang.vocab
    if isinstance(vocab_or_lang, str):
        return spacy.blank(vocab_or_lang).vocab
    raise TypeError(f"expected a Vocab, a Language or a language code, got {type(vocab_or_lang).__name__}")


def _sentence_spans(sentence: ConllSentence, scheme: str, source: Optional[str]) -> List[Span3]:
    """Decode one parsed sentence, turning sequence errors into located ConllFormatErrors."""
    try:
        return _decode([token.tag for token in sentence], scheme)
    except _SequenceError as err:
        token = sentence[err.index]
        raise ConllFormatError(
            err.problem, line_no=token.line_no, line=f"{token.text} {token.tag}", source=source
        ) from None


def _build_doc(
    vocab: Vocab, sentences: Sequence[ConllSentence], scheme: str, source: Optional[str], tag_column: Optional[int] = None
) -> Doc:
    """Make one Doc from sentences: words, sentence starts, BIO entity tags and,
    with `tag_column`, that column as token.tag_."""
    words: List[str] = []
    token_tags: Optional[List[str]] = [] if tag_column is not None else None
    sent_starts: List[bool] = []
    bio: List[str] = []
    n_spans = 0
    for sentence in sentences:
        sentence_bio = ["O"] * len(sentence)
        for start, end, label in _sentence_spans(sentence, scheme, source):
            sentence_bio[start] = f"B-{label}"
            for i in range(start + 1, end):
                sentence_bio[i] = f"I-{label}"
            n_spans += 1
        words.extend(token.text for token in sentence)
        if token_tags is not None:
            token_tags.extend(_column(token, tag_column, source) for token in sentence)  # type: ignore[arg-type]
        sent_starts.extend([True] + [False] * (len(sentence) - 1))
        bio.extend(sentence_bio)
    spaces = [True] * len(words)
    if spaces:
        spaces[-1] = False
    doc = Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts, ents=bio, tags=token_tags)
    if len(doc.ents) != n_spans:  # guards against spaCy re-reading our tags differently
        raise RuntimeError(f"built {len(doc.ents)} entities from {n_spans} tag spans in {source or 'input'}")
    return doc


def _column(token: ConllToken, column: int, source: Optional[str]) -> str:
    """Column `column` of a token line (0 is the word); only the columns before the NER tag."""
    if not 1 <= column <= len(token.middle):
        raise ConllFormatError(
            f"tag column {column} asked for, but this line has {len(token.middle)} column(s) between "
            "the token and the NER tag (columns are counted from 0, the token)",
            line_no=token.line_no,
            line=" ".join([token.text, *token.middle, token.tag]),
            source=source,
        )
    return token.middle[column - 1]


def _group_sentences(parsed: ConllFile, n_sents_per_doc: Optional[int]) -> List[ConllDocument]:
    """Keep the file's documents, or regroup a DOCSTART-free file into chunks of N sentences."""
    if n_sents_per_doc is None or parsed.has_docstart:
        return parsed.documents
    if n_sents_per_doc < 1:
        raise ValueError(f"n_sents_per_doc must be a positive integer, got {n_sents_per_doc}")
    sentences = list(parsed.sentences())
    return [sentences[i : i + n_sents_per_doc] for i in range(0, len(sentences), n_sents_per_doc)]


def build_docs(
    parsed: ConllFile,
    vocab_or_lang: Union[str, Vocab, Language] = "en",
    *,
    scheme: str = "auto",
    n_sents_per_doc: Optional[int] = None,
    tag_column: Optional[int] = None,
) -> List[Doc]:
    """Turn a parsed file into Docs (one per document) with sentence starts and ``doc.ents`` set.

    ``scheme="auto"`` detects the scheme over the whole file; each sentence is
    then decoded on its own, so entities never cross sentence boundaries.
    ``n_sents_per_doc`` only applies to files without ``-DOCSTART-`` lines.
    ``tag_column`` (counted from 0, the token) also keeps that column as
    ``token.tag_``, e.g. 1 for CoNLL-2003's part-of-speech tags.
    """
    scheme = normalize_scheme(scheme)
    if scheme == "auto":
        scheme = detect_scheme([token.tag for token in sentence] for sentence in parsed.sentences())
    vocab = _resolve_vocab(vocab_or_lang)
    groups = _group_sentences(parsed, n_sents_per_doc)
    return [_build_doc(vocab, group, scheme, parsed.source, tag_column) for group in groups if group]


def read_conll(
    source: Source,
    vocab_or_lang: Union[str, Vocab, Language] = "en",
    *,
    scheme: str = "auto",
    n_sents_per_doc: Optional[int] = None,
    source_name: Optional[str] = None,
    tag_column: Optional[int] = None,
) -> Tuple[List[Doc], ConllStats]:
    """Read a CoNLL column file (path or lines) into Docs and their corpus statistics.

    See :func:`parse_conll` for the input format and :func:`build_docs` for
    the scheme and grouping options.
    """
    parsed = parse_conll(source, source_name=source_name)
    docs = build_docs(parsed, vocab_or_lang, scheme=scheme, n_sents_per_doc=n_sents_per_doc, tag_column=tag_column)
    return docs, ConllStats.from_docs(docs)


def read_conll_text(
    text: str,
    vocab_or_lang: Union[str, Vocab, Language] = "en",
    *,
    scheme: str = "auto",
    n_sents_per_doc: Optional[int] = None,
    tag_column: Optional[int] = None,
) -> Tuple[List[Doc], ConllStats]:
    """Read CoNLL data held in a string (handy for tests and small examples)."""
    return read_conll(
        io.StringIO(text), vocab_or_lang, scheme=scheme, n_sents_per_doc=n_sents_per_doc, tag_column=tag_column
    )
