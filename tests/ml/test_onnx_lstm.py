"""The ONNX Runtime path for single sentences (lstm_runtime)."""
import copy
import pickle

import numpy
import pytest
import spacy
import torch

from spacy_rnn_ner.ml import onnx_lstm
from spacy_rnn_ner.ml.bilstm import AveragingPyTorchShim, set_lstm_runtime

pytestmark = pytest.mark.skipif(not onnx_lstm.onnxruntime_available(), reason="the onnx extra is not installed")


def _shim(nlp, name="rnn_tagger") -> AveragingPyTorchShim:
    return next(s for n in nlp.get_pipe(name).model.walk() for s in n.shims if isinstance(s, AveragingPyTorchShim))


@pytest.mark.parametrize("depth", [1, 2])
def test_onnxruntime_path_equals_torch_and_follows_every_weight_change(depth):
    from tests.helpers import SMALL_MODEL, TRAIN_DATA, blank_with_tagger, make_examples, train_tagger

    nlp = blank_with_tagger(model={**SMALL_MODEL, "depth": depth})
    examples = make_examples(nlp)
    optimizer = train_tagger(nlp, examples)
    tagger = nlp.get_pipe("rnn_tagger")
    shim = _shim(nlp)
    assert shim.runtime == "onnxruntime"  # the default, "auto", with the extra installed
    texts = [text for text, _ in TRAIN_DATA[:3]] + ["Paris", "the bank of Mercia hired Tom Frey in Oslo last May ."]

    def run(runtime):
        set_lstm_runtime(tagger.model, runtime)
        docs = [nlp(text) for text in texts]
        scores = [tagger.model.predict([doc])[0] for doc in docs]
        return docs, scores

    def same(runtime_a="torch", runtime_b="onnxruntime"):
        docs_a, scores_a = run(runtime_a)
        docs_b, scores_b = run(runtime_b)
        for a, b in zip(scores_a, scores_b):
            numpy.testing.assert_allclose(a, b, atol=1e-5)
        for a, b in zip(docs_a, docs_b):
            assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
            numpy.testing.assert_allclose(
                a.spans[tagger.cfg["spans_key"]].attrs["scores"], b.spans[tagger.cfg["spans_key"]].attrs["scores"], atol=1e-5
            )

    same()
    assert shim._onnx_model is not None  # the ONNX path really ran
    assert any(doc.ents for doc in run("onnxruntime")[0])
    # A deep copy (spaCy's resume_training makes one) and a pickle leave the session behind and build their own.
    copied = copy.deepcopy(tagger.model)
    doc = nlp.make_doc(texts[0])
    numpy.testing.assert_allclose(copied.predict([doc])[0], tagger.model.predict([doc])[0], atol=1e-5)
    assert pickle.loads(pickle.dumps(shim))._onnx_model is None
    # After an update, and inside use_params (averaged weights), the copy is rebuilt from the new weights.
    built = shim._onnx_model
    nlp.update(examples, sgd=optimizer)
    same()
    assert shim._onnx_model is not built
    with nlp.use_params(optimizer.averages):
        same()
    same()


def test_batches_of_several_sentences_run_in_torch(trained_nlp):
    shim = _shim(trained_nlp)
    docs = list(trained_nlp.pipe(["Angela Moreau flew to Lyon .", "Tom Frey lives in Oslo now ."]))
    assert shim.runtime == "onnxruntime" and docs[0].ents
    assert shim._onnx_predict(torch.zeros((5, 4)), torch.tensor([2, 3])) is None
    assert shim._onnx_predict(torch.zeros((0, 4)), torch.tensor([0])) is None


def test_lstm_runtime_setting_is_checked_and_falls_back_without_the_extra(monkeypatch):
    from tests.helpers import blank_with_tagger

    with pytest.raises(ValueError, match=r"\[rnn_tagger\] lstm_runtime must be one of"):
        blank_with_tagger(lstm_runtime="onnx")
    monkeypatch.setattr(onnx_lstm, "onnxruntime_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install \"spacy-rnn-ner\[onnx\]\", or set lstm_runtime = \"torch\""):
        blank_with_tagger(lstm_runtime="onnxruntime")
    assert _shim(blank_with_tagger(lstm_runtime="auto")).runtime == "torch"
    nlp = spacy.blank("en")
    nlp.add_pipe("rnn_token_tagger", config={"lstm_runtime": "torch"})
    assert _shim(nlp, "rnn_token_tagger").runtime == "torch"

