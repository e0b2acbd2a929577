"""The CRF's learned tag-transition scores as a thinc layer.

The layer passes the emission scores through and owns the (n_tags, n_tags)
parameter, so thinc's optimizer, averaging and serialization treat it like
any other weight. The loss and decoding over it live in the tag lattice
(`pipeline/lattice.py`), which needs the gold tags and the scheme's
constraints; the two functions below are how the component reads the
scores and returns their gradient.
"""
from typing import List, Optional

import numpy
from thinc.api import Model
from thinc.types import Floats2d


def CRFTransitions(nO: Optional[int] = None) -> Model[List[Floats2d], List[Floats2d]]:
    """Holds the transition scores; its forward pass is the identity."""
    return Model(
        "crf_transitions",
        lambda model, X, is_train: (X, lambda dY: dY),
        init=_init,
        dims={"nO": nO},
        params={"T": None},
    )


def _init(model: Model, X=None, Y=None) -> None:
    n = model.get_dim("nO")
    model.set_param("T", model.ops.alloc2f(n, n))


def transition_scores(crf: Model) -> numpy.ndarray:
    """The learned transition scores, as a host (numpy) array."""
    return crf.ops.to_numpy(crf.get_param("T"))


def add_transition_gradient(crf: Model, d_trans: numpy.ndarray) -> None:
    """Accumulate d_loss/d_T for the next optimizer step."""
    crf.inc_grad("T", crf.ops.asarray2f(d_trans))
