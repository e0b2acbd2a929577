"""The BiLSTMTagger architecture: shapes, gradients, packing and dropout."""
import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc
from thinc.api import Adam, fix_random_seed

from spacy_rnn_ner.ml.legacy import build_bilstm_tagger
from spacy_rnn_ner.ml.models import output_width
from spacy_rnn_ner.ml.bilstm import PackedBiLSTM
from spacy.util import registry

from tests.helpers import SMALL_MODEL


def make_model(n_tags=5, dropout=0.0, hidden=16):
    cfg = dict(SMALL_MODEL, hidden_width=hidden, dropout=dropout, nO=n_tags)
    model = registry.resolve({"model": cfg})["model"]
    return model


def randomize_output(model):
    """Softmax_v2 starts with zero weights; give it random ones so outputs vary with the input."""
    output = model.get_ref("output")
    W = output.get_param("W")
    output.set_param("W", numpy.random.default_rng(0).normal(0, 0.5, W.shape).astype("f"))


def docs_of(vocab, lengths):
    words = "the quick brown Fox jumps over Lazy dogs in Paris".split()
    return [Doc(vocab, words=[words[i % len(words)] for i in range(n)]) for n in lengths]


@pytest.fixture
def vocab():
    return spacy.blank("en").vocab


def test_output_width_is_read_from_config():
    model = make_model()
    assert output_width(model.get_ref("embed")) == SMALL_MODEL["embed"]["width"]
    assert model.get_ref("encoder").get_dim("nO") == 2 * 16


def test_forward_backward_shapes(vocab):
    fix_random_seed(0)
    model = make_model(n_tags=5)
    docs = docs_of(vocab, [3, 0, 7])
    model.initialize(X=docs)
    randomize_output(model)
    Y, backprop = model.begin_update(docs)
    assert [y.shape for y in Y] == [(3, 5), (0, 5), (7, 5)]
    numpy.testing.assert_allclose(Y[0].sum(axis=1), 1.0, rtol=1e-5)
    dY = [model.ops.alloc2f(*y.shape) + 0.1 for y in Y]
    backprop(dY)
    lstm = model.get_ref("encoder").shims[0]._model.lstm
    assert lstm.weight_ih_l0.grad is not None
    assert float(lstm.weight_ih_l0.grad.abs().sum()) > 0


def test_loss_falls_when_training(vocab):
    fix_random_seed(0)
    model = make_model(n_tags=3)
    docs = docs_of(vocab, [5, 8, 2])
    model.initialize(X=docs)
    rng = numpy.random.default_rng(0)
    gold = [rng.integers(0, 3, size=len(d)) for d in docs]
    optimizer = Adam(0.01)

    def step():
        Y, backprop = model.begin_update(docs)
        loss = -sum(numpy.log(y[numpy.arange(len(g)), g]).sum() for y, g in zip(Y, gold))
        truth = [numpy.eye(3, dtype="f")[g] for g in gold]
        backprop([y - t for y, t in zip(Y, truth)])
        model.finish_update(optimizer)
        return loss

    first = step()
    for _ in range(40):
        last = step()
    assert last < first * 0.5


def test_lstm_gradient_matches_finite_differences():
    torch.manual_seed(0)
    module = PackedBiLSTM(3, 2, depth=1, dropout=0.0).double()
    X = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)  # rows of sequences of 4 and 2
    lengths = torch.tensor([4, 2], dtype=torch.int64)
    assert torch.autograd.gradcheck(lambda x: module(x, lengths), (X,))


def test_prediction_does_not_depend_on_batch(vocab):
    """Packing: a short doc gets the same output alone and beside longer docs."""
    fix_random_seed(0)
    model = make_model()
    short, long1, long2 = docs_of(vocab, [3, 25, 60])
    model.initialize(X=[short, long1])
    randomize_output(model)
    alone = model.predict([short])[0]
    batched = model.predict([long1, short, Doc(vocab, words=[]), long2])[1]
    numpy.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training(vocab):
    fix_random_seed(0)
    model = make_model(dropout=0.5)
    docs = docs_of(vocab, [12])
    model.initialize(X=docs)
    randomize_output(model)
    first = model.predict(docs)[0]
    second = model.predict(docs)[0]
    numpy.testing.assert_array_equal(first, second)
    train1, _ = model.begin_update(docs)
    train2, _ = model.begin_update(docs)
    assert not numpy.allclose(train1[0], train2[0])
    assert not numpy.allclose(train1[0], first)


def test_unknown_embed_width_is_a_clear_error():
    from thinc.api import Model

    opaque = Model("opaque", lambda model, X, is_train: (X, lambda dY: dY))
    with pytest.raises(ValueError, match="width of the `embed` layer"):
        build_bilstm_tagger(opaque, hidden_width=8)


@pytest.mark.parametrize("depth", [1, 2])
def test_training_path_equals_packed_lstm_in_outputs_and_gradients(depth):
    """Training runs each direction over groups of padded sequences (fast
    oneDNN kernels); it must give the packed LSTM's outputs and gradients
    exactly, empty sequences and lengths in several groups included."""
    torch.manual_seed(0)
    module = PackedBiLSTM(6, 5, depth=depth, dropout=0.0)
    lengths = torch.tensor([7, 1, 0, 4, 30, 12, 7])
    X = torch.randn(int(lengths.sum()), 6)
    results = []
    for training in (False, True):  # packing, then the training path
        module.train(training)
        module.zero_grad()
        Xg = X.clone().requires_grad_(True)
        Y = module(Xg, lengths)
        assert Y.shape == (X.shape[0], 10)
        (Y * torch.linspace(-1, 1, Y.shape[-1])).sum().backward()
        grads = [p.grad.clone() for p in module.parameters()]
        results.append((Y.detach(), Xg.grad.clone(), grads))
    (Y1, dX1, g1), (Y2, dX2, g2) = results
    assert torch.allclose(Y1, Y2, atol=1e-6)
    assert torch.allclose(dX1, dX2, atol=1e-6)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5)
    # Each sequence's rows are those of the same sequence run alone.
    module.eval()
    alone = module(X[7 + 1 : 7 + 1 + 4], torch.tensor([4]))
    assert torch.allclose(alone, Y1[8:12], atol=1e-6)
