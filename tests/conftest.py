"""Shared fixtures (helpers live in tests/helpers.py)."""
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import DocBin

from tests.helpers import TRAIN_DATA, blank_with_tagger, make_examples, train_tagger


@pytest.fixture(scope="session")
def trained_nlp() -> Language:
    """A small tagger overfitted on TRAIN_DATA (shared; do not mutate)."""
    nlp = blank_with_tagger()
    train_tagger(nlp, make_examples(nlp))
    return nlp


@pytest.fixture(scope="session")
def pipeline_dir(trained_nlp, tmp_path_factory) -> Path:
    """trained_nlp saved to disk, for annotate."""
    path = tmp_path_factory.mktemp("annotate") / "pipeline"
    trained_nlp.to_disk(path)
    return path


# Held-out data the small model gets partly wrong: some gold labels differ from what it learned.
SWAP = {"PER": "ORG", "ORG": "PER"}


@pytest.fixture()
def dev_path(tmp_path):
    nlp = spacy.blank("en")
    docs = []
    for i, (text, ents) in enumerate(TRAIN_DATA):
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(a, b, label=SWAP.get(label, label) if i % 3 == 0 else label) for a, b, label in ents]
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "dev.spacy")
    return tmp_path / "dev.spacy"
