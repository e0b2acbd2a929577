"""Pipelines saved by the release before the restructure (tests/fixtures/legacy,
made by tests/fixtures/make_legacy_pipelines.py) load and predict the
entities they predicted then, with the same scores to float rounding."""
import json

import pytest
import spacy

from tests.fixtures.make_legacy_pipelines import HERE, load_demo, outputs, plain


@pytest.mark.parametrize("name", ["crf_v2", "softmax_v1"])
def test_legacy_pipeline_gives_identical_entities_and_scores(name):
    nlp = spacy.load(HERE / name)
    docs = [plain(nlp, doc) for doc in load_demo(nlp, "dev.iob")]
    expected = json.loads((HERE / f"{name}.expected.json").read_text())
    assert sum(len(doc["ents"]) for doc in expected) > 50
    got = outputs(nlp, docs)
    # Entities exactly; scores to float32 rounding, whose last bits depend on which matrix
    # kernels the CPU runs (the fixtures' scores were written on an Intel CPU, and an AMD
    # one differs in the seventh digit).
    assert [{k: v for k, v in doc.items() if k != "scores"} for doc in got] == [
        {k: v for k, v in doc.items() if k != "scores"} for doc in expected
    ]
    for doc_got, doc_expected in zip(got, expected):
        assert doc_got["scores"] == pytest.approx(doc_expected["scores"], abs=1e-5)


def test_legacy_pipeline_saved_again_keeps_its_outputs(tmp_path):
    nlp = spacy.load(HERE / "crf_v2")
    nlp.to_disk(tmp_path / "again")
    again = spacy.load(tmp_path / "again")
    gold = load_demo(nlp, "dev.iob")
    assert outputs(again, [plain(again, doc) for doc in gold]) == outputs(nlp, [plain(nlp, doc) for doc in gold])
