"""`spacy package` of a pipeline whose labels spaCy's ner takes but look odd."""
import json
import subprocess
import sys

import pytest
import spacy

from tests.helpers import blank_with_tagger, make_examples, train_tagger
from tests.pipeline.test_user_pipelines import ODD_DATA

pytestmark = pytest.mark.slow


def test_spacy_package_keeps_odd_labels_and_predictions(tmp_path):
    nlp = blank_with_tagger()
    train_tagger(nlp, make_examples(nlp, ODD_DATA), n_iter=40)
    nlp.meta.update({"name": "odd_labels", "version": "0.0.1"})
    nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "out").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(tmp_path / "pipeline"), str(tmp_path / "out"), "--build", "none"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    package = tmp_path / "out" / "en_odd_labels-0.0.1"
    data = package / "en_odd_labels" / "en_odd_labels-0.0.1"
    meta = json.loads((package / "meta.json").read_text(encoding="utf8"))
    # spaCy finds our package behind the factory and architectures and makes it a requirement.
    assert any(req.startswith("spacy-rnn-ner") or req.startswith("spacy_rnn_ner") for req in meta["requirements"])
    assert set(meta["labels"]["rnn_tagger"]) == {label for _, ents in ODD_DATA for *_, label in ents}
    packaged = spacy.load(data)
    assert packaged.get_pipe("rnn_tagger").labels == nlp.get_pipe("rnn_tagger").labels
    for text, _ in ODD_DATA:
        doc, expected = packaged(text), nlp(text)
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
            (e.start_char, e.end_char, e.label_) for e in expected.ents
        ]
        assert list(doc.spans["rnn_tagger"].attrs["scores"]) == pytest.approx(
            list(expected.spans["rnn_tagger"].attrs["scores"]), abs=1e-6
        )
