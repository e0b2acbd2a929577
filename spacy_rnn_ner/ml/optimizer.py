"""thinc's Adam, with its CPU arithmetic done in place by torch.

thinc's Optimizer updates each parameter with a one-thread Cython loop and
keeps the weight averages with numpy expressions that allocate two
temporaries per call. Our default model has 8.2M parameters, most of them in
hashed embedding tables, so on the 2-core Xeon of our benchmarks the update
took about 60 ms of each training step. The same arithmetic as torch
in-place operations on the same numpy buffers (torch.from_numpy shares
them) runs on torch's thread pool in about a third of that. The state is
thinc's own (mom1, mom2, averages, nr_update), so everything that reads the
optimizer, such as `model.use_params(optimizer.averages)`, works unchanged.
Settings or arrays this path does not cover go to thinc's own code.
"""
from typing import Tuple

import numpy
import torch
from spacy.util import registry
from thinc.api import Optimizer
from thinc.optimizers import ADAM_DEFAULTS, FloatOrSeq
from thinc.types import FloatsXd

_KeyT = Tuple[int, str]


class TorchAdam(Optimizer):
    """thinc's Adam (same settings, same state), updated in place by torch."""

    def __call__(self, key: _KeyT, weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0):
        if not self._covers(weights, gradient):
            return super().__call__(key, weights, gradient, lr_scale=lr_scale)
        self.nr_update[key] += 1
        nr_upd = self.nr_update[key]
        w = torch.from_numpy(weights).view(-1)
        g = torch.from_numpy(gradient).view(-1)
        if self.grad_clip:
            norm = float(torch.linalg.vector_norm(g))
            if norm >= self.grad_clip:
                g.mul_(self.grad_clip / norm)
        if key not in self.mom1:
            self.mom1[key] = numpy.zeros(weights.size, dtype="f")
        if key not in self.mom2:
            self.mom2[key] = numpy.zeros(weights.size, dtype="f")
        mom1, mom2 = torch.from_numpy(self.mom1[key]), torch.from_numpy(self.mom2[key])
        b1, b2 = self.b1, self.b2
        # As thinc: the bias corrections folded into the step size, and eps
        # added to the square root of the uncorrected second moment.
        lr = self.learn_rate * (1.0 - b2**nr_upd) ** 0.5 / (1.0 - b1**nr_upd) * lr_scale
        mom1.lerp_(g, 1.0 - b1)
        mom2.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        w.addcdiv_(mom1, torch.sqrt(mom2).add_(self.eps), value=-lr)
        g.zero_()
        if self.L2 != 0:  # decoupled weight decay (_covers leaves the L2-in-gradient form to thinc)
            w.mul_(1.0 - lr_scale * self.learn_rate * self.L2)
        if self.averages is not None:
            if key not in self.averages:
                self.averages[key] = numpy.zeros(weights.shape, dtype="f")
            decay = min((1.0 + nr_upd) / (10.0 + nr_upd), 0.9999)
            torch.from_numpy(self.averages[key]).view(-1).lerp_(w, 1.0 - decay)
        return weights, gradient

    def _covers(self, weights, gradient) -> bool:
        if self.use_radam or not (self.b1 > 0.0 and self.b2 > 0.0):
            return False
        if self.L2 != 0 and not self.L2_is_weight_decay:
            return False
        return all(
            isinstance(a, numpy.ndarray)
            and a.dtype == numpy.float32
            and a.size > 0
            and a.flags.c_contiguous
            and a.flags.writeable
            for a in (weights, gradient)
        ) and weights.shape == gradient.shape


@registry.optimizers("spacy_rnn_ner.Adam.v1")
def make_torch_adam(
    learn_rate: FloatOrSeq = ADAM_DEFAULTS["learn_rate"],
    *,
    L2: FloatOrSeq = ADAM_DEFAULTS["L2"],
    beta1: FloatOrSeq = ADAM_DEFAULTS["beta1"],
    beta2: FloatOrSeq = ADAM_DEFAULTS["beta2"],
    eps: FloatOrSeq = ADAM_DEFAULTS["eps"],
    grad_clip: FloatOrSeq = ADAM_DEFAULTS["grad_clip"],
    L2_is_weight_decay: bool = bool(ADAM_DEFAULTS["L2_is_weight_decay"]),
    use_averages: bool = True,
) -> Optimizer:
    """thinc's Adam.v1 (the same settings and defaults), updated by torch on
    CPU: see TorchAdam. On a GPU, or for settings it does not cover, thinc's
    own update runs."""
    return TorchAdam(
        learn_rate,
        L2=L2,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        grad_clip=grad_clip,
        L2_is_weight_decay=L2_is_weight_decay,
        use_averages=use_averages,
    )
