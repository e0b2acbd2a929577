"""thinc's CPU ops with three kernels done by torch.

On the 2-core Xeon of our benchmarks, thinc's NumpyOps was several times
slower than torch's CPU kernels for three operations that our model calls
on every batch:

- gemm (blis, one thread): 18 ms for a (1000 x 1152) @ (1152 x 384)
  product, against 5 ms for torch.mm;
- gather_add, the sum of table rows that the hashed embeddings and the fused
  embedding tables read: 5.5 ms for 1000 rows of 16 keys, against 1.2 ms for
  torch's embedding_bag;
- scatter_add, which the document memory and the embedding gradients use:
  thinc's fast loop takes int32 indices only and otherwise falls back to
  numpy's add.at (2.7 ms for 1000 rows of 256), against 0.1 ms for torch's
  index_add_.

torch runs them on its own thread pool, the one the LSTM already uses. The
arrays pass to torch without copies (torch.from_numpy), the results are
numpy arrays, and everything else is NumpyOps unchanged. Arrays the torch
kernels do not take (other dtypes, read-only buffers) go to NumpyOps.
"""
import numpy
import torch
from thinc.api import Model, NumpyOps


class TorchCPUOps(NumpyOps):
    """NumpyOps whose gemm, gather_add and scatter_add call torch for float32 arrays."""

    def gemm(self, x, y, *, out=None, trans1: bool = False, trans2: bool = False):
        if not _shareable(x, y, *(() if out is None else (out,))) or x.ndim != 2 or y.ndim != 2:
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

    def gather_add(self, table, indices):
        if not (_shareable(table) and table.ndim == 2 and _integers(indices) and indices.ndim == 2):
            return super().gather_add(table, indices)
        if not indices.size:
            return numpy.zeros((indices.shape[0], table.shape[1]), dtype="f")
        keys = torch.from_numpy(numpy.asarray(indices, dtype="int64"))
        return torch.nn.functional.embedding_bag(keys, torch.from_numpy(table), mode="sum").numpy()

    def scatter_add(self, table, indices, values):
        if not (
            _shareable(table, values)
            and table.ndim == 2
            and values.ndim == 2
            and _integers(indices)
            and indices.ndim == 1
            and values.shape == (indices.shape[0], table.shape[1])
        ):
            return super().scatter_add(table, indices, values)
        keys = torch.from_numpy(numpy.asarray(indices, dtype="int64"))
        torch.from_numpy(table).index_add_(0, keys, torch.from_numpy(values))
        return table


def _shareable(*arrays) -> bool:
    """float32 numpy arrays that torch.from_numpy can wrap as they are."""
    return all(isinstance(a, numpy.ndarray) and a.dtype == numpy.float32 and a.flags.writeable for a in arrays)


def _integers(indices) -> bool:
    return isinstance(indices, numpy.ndarray) and indices.dtype.kind in "iu"


_TORCH_CPU_OPS = TorchCPUOps()


def use_torch_cpu_ops(model: Model) -> Model:
    """Give every node of `model` that is on plain NumpyOps the TorchCPUOps.

    Nodes on other ops (CupyOps on a GPU, AppleOps, ...) keep theirs, and
    thinc's `to_cpu`/`to_gpu` replace the ops as usual."""
    for node in model.walk():
        if type(node.ops) is NumpyOps:
            node.ops = _TORCH_CPU_OPS
    return model
