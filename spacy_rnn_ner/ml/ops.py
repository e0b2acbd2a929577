"""thinc's CPU ops with matrix products done by torch.

thinc's NumpyOps multiplies matrices with blis on one thread. On the 2-core
Xeon of our benchmarks that took 18 ms for a (1000 x 1152) @ (1152 x 384)
product, against 5 ms for torch.mm, which runs on torch's own thread pool
(the one the LSTM already uses) with oneDNN/MKL kernels; training spent
about a sixth of its time in these products. Everything else is NumpyOps
unchanged, and arrays pass to torch without copies (torch.from_numpy).
"""
import numpy
import torch
from thinc.api import Model, NumpyOps


class TorchGemmOps(NumpyOps):
    """NumpyOps whose gemm calls torch.mm for float32 matrices."""

    def gemm(self, x, y, *, out=None, trans1: bool = False, trans2: bool = False):
        if not _torch_can_read(x, y, out):
            return super().gemm(x, y, out=out, trans1=trans1, trans2=trans2)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if trans1:
            xt = xt.t()
        if trans2:
            yt = yt.t()
        if out is None:
            return torch.mm(xt, yt).numpy()
        torch.mm(xt, yt, out=torch.from_numpy(out))
        return out


def _torch_can_read(x, y, out) -> bool:
    arrays = (x, y) if out is None else (x, y, out)
    return all(
        isinstance(a, numpy.ndarray) and a.dtype == numpy.float32 and a.ndim == 2 and a.flags.writeable
        for a in arrays
    )


_TORCH_GEMM_OPS = TorchGemmOps()


def use_torch_gemm(model: Model) -> Model:
    """Give every node of `model` that is on plain NumpyOps the TorchGemmOps.

    Nodes on other ops (CupyOps on a GPU, AppleOps, ...) keep theirs, and
    thinc's `to_cpu`/`to_gpu` replace the ops as usual."""
    for node in model.walk():
        if type(node.ops) is NumpyOps:
            node.ops = _TORCH_GEMM_OPS
    return model
