"""Shared fixtures (helpers live in tests/helpers.py)."""
from pathlib import Path

import pytest
from spacy.language import Language

from tests.helpers import blank_with_tagger, make_examples, train_tagger


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
