"""spacy_rnn_ner.Adam.v1: the torch update equals thinc's Adam."""
import numpy
import pytest
from spacy.util import registry
from thinc.api import Adam, Optimizer

from spacy_rnn_ner.ml.optimizer import TorchAdam

SETTINGS = [
    {},
    {"grad_clip": 0.5, "L2": 1e-2, "learn_rate": 0.01},
    {"grad_clip": 0.0, "use_averages": False, "beta1": 0.8, "beta2": 0.99},
    {"eps": 0.5},  # large enough that where eps enters the update shows
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_updates_equal_thincs_adam(settings):
    """The one comparison of the fast path with thinc's own: weights, moments,
    averages and the zeroed gradient after a dozen steps on two parameters,
    with gradient clipping, weight decay and a learning-rate scale."""
    rng = numpy.random.default_rng(0)
    shapes = {(1, "W"): (30, 7), (2, "b"): (11,)}
    start = {key: rng.normal(size=shape).astype("f") for key, shape in shapes.items()}
    ours = registry.resolve({"opt": {"@optimizers": "spacy_rnn_ner.Adam.v1", **settings}})["opt"]
    theirs = Adam(**settings)
    assert type(ours) is TorchAdam
    w_ours = {key: w.copy() for key, w in start.items()}
    w_theirs = {key: w.copy() for key, w in start.items()}
    for step in range(12):
        for key, shape in shapes.items():
            grad = rng.normal(scale=3.0, size=shape).astype("f")
            g_ours, g_theirs = grad.copy(), grad.copy()
            w_ours[key], g_ours = ours(key, w_ours[key], g_ours, lr_scale=0.5 if step % 3 == 0 else 1.0)
            w_theirs[key], g_theirs = theirs(key, w_theirs[key], g_theirs, lr_scale=0.5 if step % 3 == 0 else 1.0)
            assert not g_ours.any() and not g_theirs.any()
    for key in shapes:
        assert not numpy.allclose(w_ours[key], start[key])
        numpy.testing.assert_allclose(w_ours[key], w_theirs[key], rtol=1e-5, atol=1e-6)
        numpy.testing.assert_allclose(ours.mom1[key], theirs.mom1[key], rtol=1e-5, atol=1e-6)
        numpy.testing.assert_allclose(ours.mom2[key], theirs.mom2[key], rtol=1e-5, atol=1e-6)
        if theirs.averages is not None:
            numpy.testing.assert_allclose(ours.averages[key], theirs.averages[key], rtol=1e-5, atol=1e-6)
    assert ours.averages is None if theirs.averages is None else ours.averages.keys() == theirs.averages.keys()


def test_settings_it_does_not_cover_go_to_thinc():
    """L2 added to the gradient (not weight decay) and RAdam take thinc's own update."""
    for settings in ({"L2": 0.1, "L2_is_weight_decay": False}, {"use_radam": True}):
        ours, theirs = TorchAdam(0.01, **settings), Optimizer(0.01, **settings)
        w = numpy.linspace(-1, 1, 8).astype("f")
        g = numpy.linspace(1, -1, 8).astype("f")
        a, _ = ours((0, "W"), w.copy(), g.copy())
        b, _ = theirs((0, "W"), w.copy(), g.copy())
        numpy.testing.assert_array_equal(a, b)
