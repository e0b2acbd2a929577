"""TorchCPUOps: the torch kernels equal thinc's own."""
import copy
import pickle

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import NumpyOps, fix_random_seed

from spacy_rnn_ner.ml.ops import TorchCPUOps, use_torch_cpu_ops
from tests.helpers import SMALL_MODEL


@pytest.mark.parametrize("trans1", [False, True])
@pytest.mark.parametrize("trans2", [False, True])
def test_gemm_matches_numpy_ops(trans1, trans2):
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(7, 5) if trans1 else (5, 7)).astype("f")
    y = rng.normal(size=(3, 7) if trans2 else (7, 3)).astype("f")
    expected = NumpyOps().gemm(x, y, trans1=trans1, trans2=trans2)
    got = TorchCPUOps().gemm(x, y, trans1=trans1, trans2=trans2)
    assert isinstance(got, numpy.ndarray) and got.shape == (5, 3)
    numpy.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    out = numpy.zeros((5, 3), dtype="f")
    assert TorchCPUOps().gemm(x, y, out=out, trans1=trans1, trans2=trans2) is out
    numpy.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_gemm_falls_back_where_torch_cannot_share_the_array():
    x = numpy.arange(6, dtype="f").reshape(2, 3)
    x.flags.writeable = False
    got = TorchCPUOps().gemm(x, numpy.ones((3, 2), dtype="f"))
    numpy.testing.assert_array_equal(got, [[3, 3], [12, 12]])


def test_ops_survive_pickle_and_deepcopy():
    assert type(pickle.loads(pickle.dumps(TorchCPUOps()))) is TorchCPUOps
    model = use_torch_cpu_ops(registry.resolve({"model": dict(SMALL_MODEL, nO=4)})["model"])
    assert all(type(node.ops) is TorchCPUOps for node in copy.deepcopy(model).walk())


def test_tagger_scores_and_gradients_equal_the_plain_ops():
    """The one comparison of the fast path with the plain path: a whole
    tagger's forward pass and every parameter gradient, both ops alike."""
    vocab = spacy.blank("en").vocab
    words = "Angela Moreau of the European Central Bank met Tomas Berg in Oslo .".split()
    docs = [Doc(vocab, words=words), Doc(vocab, words=words[3:9])]

    def run(model):
        scores, backprop = model.begin_update(docs)
        backprop([model.ops.xp.ones_like(s) for s in scores])
        grads = {
            (node.id, name): node.get_grad(name).copy()
            for node in model.walk()
            for name in node.grad_names
        }
        lstm = model.get_ref("encoder").shims[0]._model
        grads.update({name: p.grad.numpy().copy() for name, p in lstm.named_parameters()})
        return scores, grads

    fix_random_seed(0)
    # The v2 CRF tagger with the document memory and its window: every kernel
    # of TorchCPUOps runs (hashed rows, memory sums, maxout and output products).
    config = dict(
        SMALL_MODEL,
        **{"@architectures": "spacy_rnn_ner.BiLSTMCRFTagger.v2"},
        nO=5,
        dropout=0.0,
        doc_memory=True,
        memory_conv_width=8,
    )
    model = registry.resolve({"model": config})["model"]
    assert {type(node.ops) for node in model.walk()} == {TorchCPUOps}
    model.initialize(X=docs)
    output = model.get_ref("output")
    output.set_param("W", numpy.random.default_rng(1).normal(0, 0.5, output.get_param("W").shape).astype("f"))
    fast_scores, fast_grads = run(model)
    for node in model.walk():
        node.ops = NumpyOps()
        for name in node.grad_names:
            node.set_grad(name, node.ops.alloc(node.get_grad(name).shape))
    model.get_ref("encoder").shims[0]._model.zero_grad()
    plain_scores, plain_grads = run(model)
    for fast, plain in zip(fast_scores, plain_scores):
        numpy.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)
    assert fast_grads.keys() == plain_grads.keys() and len(fast_grads) > 10
    for key, grad in plain_grads.items():
        numpy.testing.assert_allclose(fast_grads[key], grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["uint32", "int32", "int64", "uint64"])
def test_gather_add_matches_numpy_ops(dtype):
    rng = numpy.random.default_rng(0)
    table = rng.normal(size=(50, 6)).astype("f")
    keys = rng.integers(0, 50, size=(9, 4)).astype(dtype)
    keys[0] = 3  # one row reading the same key four times
    got = TorchCPUOps().gather_add(table, keys)
    assert isinstance(got, numpy.ndarray) and got.dtype == numpy.float32
    numpy.testing.assert_allclose(got, NumpyOps().gather_add(table, keys.astype("uint32")), rtol=1e-5, atol=1e-6)
    assert TorchCPUOps().gather_add(table, keys[:0]).shape == (0, 6)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_scatter_add_matches_numpy_ops_with_repeated_indices(dtype):
    rng = numpy.random.default_rng(0)
    values = rng.normal(size=(12, 5)).astype("f")
    indices = numpy.array([0, 3, 3, 1, 0, 3, 2, 2, 0, 4, 4, 4], dtype=dtype)
    ours, theirs = numpy.ones((6, 5), dtype="f"), numpy.ones((6, 5), dtype="f")
    TorchCPUOps().scatter_add(ours, indices, values)
    NumpyOps().scatter_add(theirs, indices, values)
    numpy.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not numpy.allclose(ours, 1.0)
