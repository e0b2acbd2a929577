"""Tests for the CoNLL column reader and the scripts/convert.py command line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
from spacy.tokens import Doc

from spacy_rnn_ner.data.conll import (
    ConllFormatError,
    ConllStats,
    detect_scheme,
    parse_conll,
    read_conll,
    read_conll_text,
    tags_to_spans,
)


# The same two sentences in three encodings. Sentence 1 has two adjacent PER
# entities ("Ann", "Bob Smith"), which is the one place IOB1 uses B-.
WORDS = [["Ann", "Bob", "Smith", "met", "in", "New", "York", "."], ["EU", "rejects", "German", "call"]]
IOB1 = [
    ["I-PER", "B-PER", "I-PER", "O", "O", "I-LOC", "I-LOC", "O"],
    ["I-ORG", "O", "I-MISC", "O"],
]
IOB2 = [
    ["B-PER", "B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"],
    ["B-ORG", "O", "B-MISC", "O"],
]
BILUO = [
    ["U-PER", "B-PER", "L-PER", "O", "O", "B-LOC", "L-LOC", "O"],
    ["U-ORG", "O", "U-MISC", "O"],
]
BIOES = [[t.replace("U-", "S-").replace("L-", "E-") for t in sent] for sent in BILUO]
EXPECTED_ENTS = [("Ann", "PER"), ("Bob Smith", "PER"), ("New York", "LOC"), ("EU", "ORG"), ("German", "MISC")]


def column_text(tags: List[List[str]], sep: str = " ", docstart: str = "") -> str:
    """Render WORDS with ``tags`` as a column file (POS and chunk columns in the middle)."""
    lines = [docstart, ""] if docstart else []
    for words, sent_tags in zip(WORDS, tags):
        lines += [sep.join([w, "NN", "I-NP", t]) for w, t in zip(words, sent_tags)]
        lines.append("")
    return "\n".join(lines) + "\n"


def ents(docs: List[Doc]) -> List[Tuple[str, str]]:
    """All (text, label) entities over the docs, in order."""
    return [(e.text, e.label_) for doc in docs for e in doc.ents]


def doc_signature(docs: List[Doc]) -> list:
    """Everything the reader sets on a Doc, for comparing two reads."""
    return [
        ([t.text for t in d], [t.is_sent_start for t in d], [(e.start, e.end, e.label_) for e in d.ents])
        for d in docs
    ]


@pytest.fixture(scope="module")
def vocab():
    """One shared English vocab keeps the tests fast."""
    return spacy.blank("en").vocab


# ---------------------------------------------------------------- documents


@pytest.mark.parametrize(
    "docstart",
    [
        "-DOCSTART-",
        "-DOCSTART- O",
        "-DOCSTART- -X- O O",
        "-DOCSTART- -X- -X- O",
        "-DOCSTART-\t-X-\t-X-\tO",
        "-DOCSTART-\tO",
        "  -DOCSTART- -X- O O  ",
    ],
)
def test_docstart_forms_break_documents_and_are_not_tokens(vocab, docstart: str) -> None:
    text = f"{docstart}\n\nA O\nB O\n\nC O\n{docstart}\nD I-PER\n\n{docstart}\n\nE O\n"
    docs, stats = read_conll_text(text, vocab)
    assert [[t.text for t in d] for d in docs] == [["A", "B", "C"], ["D"], ["E"]]
    assert all("DOCSTART" not in t.text for d in docs for t in d)
    assert (stats.documents, stats.sentences, stats.tokens, stats.entities) == (3, 4, 5, 1)


def test_document_keeps_sentences_with_boundaries(vocab) -> None:
    docs, _ = read_conll_text(column_text(IOB1, docstart="-DOCSTART- -X- O O"), vocab)
    assert len(docs) == 1
    doc = docs[0]
    assert [s.text for s in doc.sents] == [" ".join(WORDS[0]), " ".join(WORDS[1])]
    assert doc[0].is_sent_start and doc[len(WORDS[0])].is_sent_start
    assert not any(t.is_sent_start for t in doc[1 : len(WORDS[0])])
    assert doc.has_annotation("SENT_START")
    assert doc.text == " ".join(WORDS[0] + WORDS[1])  # space after every token but the last


def test_file_without_docstart_is_one_doc_or_grouped(vocab) -> None:
    text = "".join(f"w{i} O\n\n" for i in range(5))
    assert len(read_conll_text(text, vocab)[0]) == 1
    docs, stats = read_conll_text(text, vocab, n_sents_per_doc=2)
    assert [len(list(d.sents)) for d in docs] == [2, 2, 1]
    assert (stats.documents, stats.sentences) == (3, 5)
    with pytest.raises(ValueError):
        read_conll_text(text, vocab, n_sents_per_doc=0)


def test_n_sents_per_doc_keeps_docstart_structure(vocab) -> None:
    text = "-DOCSTART- O\n\na O\n\nb O\n\nc O\n"
    docs, _ = read_conll_text(text, vocab, n_sents_per_doc=1)
    assert len(docs) == 1 and len(list(docs[0].sents)) == 3


# ---------------------------------------------------------------- schemes


@pytest.mark.parametrize("scheme", ["auto", "explicit"])
@pytest.mark.parametrize(
    "name,tags", [("iob1", IOB1), ("iob2", IOB2), ("biluo", BILUO), ("biluo", BIOES)], ids=["iob1", "iob2", "biluo", "bioes"]
)
def test_same_entities_from_every_encoding(vocab, name: str, tags, scheme: str) -> None:
    docs, stats = read_conll_text(column_text(tags), vocab, scheme=name if scheme == "explicit" else "auto")
    assert ents(docs) == EXPECTED_ENTS
    assert stats.entities_per_label == {"PER": 2, "LOC": 1, "ORG": 1, "MISC": 1}


def test_detect_scheme() -> None:
    assert detect_scheme(IOB1) == "iob1"
    assert detect_scheme(IOB2) == "iob2"
    assert detect_scheme(BILUO) == "biluo"
    assert detect_scheme(BIOES) == "biluo"
    assert detect_scheme([["O", "O"]]) == "iob2"
    # IOB1 only needs one I- tag that starts a span; another type counts too.
    assert detect_scheme([["B-PER", "I-PER"], ["B-PER", "I-LOC"]]) == "iob1"


def test_iob1_b_after_o_starts_entity() -> None:
    # CoNLL-2003 train has "the/O Atlanta/B-MISC Games/I-MISC": just an entity.
    assert tags_to_spans(["O", "B-MISC", "I-MISC", "O"], "iob1") == [(1, 3, "MISC")]
    assert tags_to_spans(["I-LOC", "I-PER", "B-PER", "O", "I-LOC"], "iob1") == [
        (0, 1, "LOC"),
        (1, 2, "PER"),
        (2, 3, "PER"),
        (4, 5, "LOC"),
    ]


def test_entities_do_not_cross_sentences(vocab) -> None:
    docs, _ = read_conll_text("A I-PER\nB I-PER\n\nC I-PER\n", vocab)
    assert [e.text for e in docs[0].ents] == ["A B", "C"]


# ---------------------------------------------------------------- columns / lines


def test_space_and_tab_columns_give_identical_docs(vocab) -> None:
    spaced = read_conll_text(column_text(IOB1, " ", "-DOCSTART- -X- O O"), vocab)[0]
    tabbed = read_conll_text(column_text(IOB1, "\t", "-DOCSTART-\t-X-\tO\tO"), vocab)[0]
    mixed = read_conll_text(column_text(IOB1, " \t  ", "-DOCSTART- -X- O O"), vocab)[0]
    assert doc_signature(spaced) == doc_signature(tabbed) == doc_signature(mixed)
    assert ents(tabbed) == EXPECTED_ENTS


def test_two_columns_are_enough(vocab) -> None:
    docs, _ = read_conll_text("Paris B-LOC\nis O\n", vocab)
    assert ents(docs) == [("Paris", "LOC")]


def test_whitespace_only_lines_split_sentences(vocab) -> None:
    docs, stats = read_conll_text("A O\n   \nB O\n\t\nC O\r\n \t \r\nD O\n", vocab)
    assert stats.sentences == 4 and stats.documents == 1
    assert [s.text for s in docs[0].sents] == ["A", "B", "C", "D"]


def test_reads_path_and_lines_alike(tmp_path: Path, vocab) -> None:
    path = tmp_path / "x.iob"
    path.write_text(column_text(IOB1), encoding="utf-8")
    from_path = read_conll(path, vocab)[0]
    from_str_path = read_conll(str(path), vocab)[0]
    from_lines = read_conll(column_text(IOB1).splitlines(), vocab)[0]
    assert doc_signature(from_path) == doc_signature(from_str_path) == doc_signature(from_lines)


# ---------------------------------------------------------------- errors


def test_one_column_line_raises_with_file_and_line(tmp_path: Path, vocab) -> None:
    path = tmp_path / "broken.iob"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_conll(path, vocab)
    message = str(info.value)
    assert "line 4" in message and "broken.iob" in message
    assert "'rejects'" in message and "expected at least two columns" in message
    assert isinstance(info.value, ConllFormatError) and info.value.line_no == 4


@pytest.mark.parametrize("tag", ["X-PER", "B-", "PER", "b-PER", "O-", "BI-PER"])
def test_invalid_tag_raises_with_line(vocab, tag: str) -> None:
    with pytest.raises(ValueError, match=r"line 3: invalid NER tag") as info:
        read_conll_text(f"A O\n\nB {tag}\n", vocab)
    assert tag in str(info.value)


@pytest.mark.parametrize(
    "text,scheme,line",
    [
        ("A O\nB I-PER\n", "iob2", 2),  # IOB2 needs B- to open a span
        ("A B-PER\nB I-LOC\n", "iob2", 2),
        ("A O\nB L-PER\n", "auto", 2),  # L- without B-
        ("A B-PER\nB O\n", "biluo", 2),  # B- never closed
        ("A B-PER\nB I-PER\n\nC O\n", "biluo", 2),  # sentence ends inside an entity
        ("A U-PER\nB I-PER\n", "auto", 2),
        ("A O\nB L-PER\n", "iob1", 2),  # BILUO prefix in an IOB file
    ],
)
def test_invalid_sequence_raises_with_line(vocab, text: str, scheme: str, line: int) -> None:
    with pytest.raises(ValueError, match=rf"line {line}: invalid|line {line}: tag"):
        read_conll_text(text, vocab, scheme=scheme)


def test_unknown_scheme_rejected(vocab) -> None:
    with pytest.raises(ValueError, match="unknown tag scheme"):
        read_conll_text("A O\n", vocab, scheme="bilou2")


# ---------------------------------------------------------------- stats


def test_stats_counts_and_format(vocab) -> None:
    text = column_text(IOB1, docstart="-DOCSTART- -X- -X- O") + "-DOCSTART- O\n\nLondon I-LOC\ncalling O\n"
    docs, stats = read_conll_text(text, vocab)
    assert stats == ConllStats(documents=2, sentences=3, tokens=14, entities_per_label={"PER": 2, "LOC": 2, "ORG": 1, "MISC": 1})
    assert stats.entities == 6 == sum(len(d.ents) for d in docs)
    assert stats.format("train") == (
        "train: 2 documents, 3 sentences, 14 tokens, 6 entities (LOC 2, MISC 1, ORG 1, PER 2)"
    )
    big = ConllStats(946, 14041, 203621, {"PER": 6600, "LOC": 7140})
    assert big.format() == "946 documents, 14,041 sentences, 203,621 tokens, 13,740 entities (LOC 7,140, PER 6,600)"


def test_parse_conll_keeps_line_numbers() -> None:
    parsed = parse_conll(io.StringIO("-DOCSTART- O\n\nA I-PER\n\nB O\n"))
    assert parsed.has_docstart
    assert [[[tok.line_no for tok in s] for s in d] for d in parsed.documents] == [[[3], [5]]]


# ---------------------------------------------------------------- script
