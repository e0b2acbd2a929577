"""thinc layers around our torch modules: list-of-arrays <-> padded tensors,
and a PyTorch shim whose parameter averaging actually reaches the torch weights."""
import contextlib
import copy
import warnings
from typing import Any, Callable, Dict, List, Tuple, cast

import torch
from thinc.api import (
    ArgsKwargs,
    Maxout,
    Model,
    PyTorchShim,
    PyTorchWrapper_v2,
    chain,
    expand_window,
    list2ragged,
    ragged2list,
    torch2xp,
    with_array,
    xp2torch,
)
from thinc.types import Floats2d

from .torch_modules import PackedBiLSTM


class AveragingPyTorchShim(PyTorchShim):
    """A PyTorchShim whose `use_params` finds the optimizer's averages.

    thinc's PyTorchShim.finish_update hands each torch parameter to the
    optimizer under the key (shim.id, name), but its use_params looks for
    string keys "pytorch_{id}_{name}" that nothing writes. So under spaCy's
    default `use_averages = true`, evaluation and saving silently used the raw
    LSTM weights beside averaged thinc weights (GUIDE trap 3). This subclass
    looks the averages up under the keys the optimizer really uses.
    """

    @contextlib.contextmanager
    def use_params(self, params: Dict[Any, Any]):
        state_dict = {}
        for name, param in self._model.named_parameters():
            key = (self.id, name)
            if key in params:
                state_dict[name] = xp2torch(params[key], device=param.device).reshape(param.shape)
        if not state_dict:
            yield
            return
        backup = {k: v.detach().clone() for k, v in self._model.state_dict().items()}
        self._model.load_state_dict(state_dict, strict=False)
        self._int8_model = None
        try:
            yield
        finally:
            self._model.load_state_dict(backup)
            self._int8_model = None

    # Set by the rnn_tagger component (its int8_inference setting).
    int8 = False
    _int8_model: Any = None
    _int8_key: Any = None

    def predict(self, inputs: ArgsKwargs) -> Any:
        """As PyTorchShim.predict, without switching the module to eval() and
        back to train() on every call: each switch walks every submodule, which
        cost ~0.2 ms of a 3 ms single-sentence call. begin_update sets train()
        itself, so leaving the module in eval mode here is safe."""
        if self._model.training:
            self._model.eval()
        model = self._quantized() if self.int8 else self._model
        with torch.no_grad():
            if self._mixed_precision:
                with torch.autocast(device_type="cuda", enabled=True):
                    return model(*inputs.args, **inputs.kwargs)
            return model(*inputs.args, **inputs.kwargs)

    def finish_update(self, optimizer) -> None:
        super().finish_update(optimizer)
        self._int8_model = None  # thinc updates the weights in place: no tensor tells

    def from_bytes(self, bytes_data):
        self._int8_model = None
        return super().from_bytes(bytes_data)

    def _quantized(self) -> torch.nn.Module:
        """An int8 copy of the module's LSTMs (torch dynamic quantization), built
        on first use after the weights change: after an update (finish_update),
        a load, or under use_params (new tensors, or in-place torch updates,
        which torch counts in each tensor's _version)."""
        key = [(id(p), p.data_ptr(), p._version) for p in self._model.parameters()]
        if self._int8_model is None or self._int8_key != key:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
                quantized = torch.ao.quantization.quantize_dynamic(
                    copy.deepcopy(self._model), {torch.nn.LSTM}, dtype=torch.qint8
                )
            self._int8_model, self._int8_key = quantized.eval(), key
        return self._int8_model


def _pad(model: Model, Xs: List[Floats2d], width: int) -> Tuple[Any, List[int]]:
    lengths = [len(x) for x in Xs]
    padded = model.ops.alloc3f(len(Xs), max(lengths, default=0), width)
    for i, x in enumerate(Xs):
        padded[i, : len(x)] = x
    return padded, lengths


def _unpad(padded: Any, lengths: List[int]) -> List[Any]:
    return [padded[i, :n] for i, n in enumerate(lengths)]


def _convert_inputs(
    model: Model, Xs: List[Floats2d], is_train: bool
) -> Tuple[ArgsKwargs, Callable[[ArgsKwargs], List[Floats2d]]]:
    """Pad the per-doc arrays into one tensor (sharing memory, no copy) plus lengths."""
    shim = cast(PyTorchShim, model.shims[0])
    padded, lengths = _pad(model, Xs, model.get_dim("nI"))
    Xt = xp2torch(padded, requires_grad=is_train, device=shim.device)
    # pack_padded_sequence wants the lengths as a CPU int64 tensor, wherever the data is.
    lengths_t = torch.tensor(lengths, dtype=torch.int64)

    def convert_dX(d_inputs: ArgsKwargs) -> List[Floats2d]:
        dX = d_inputs.args[0]
        if dX is None:
            return [model.ops.alloc2f(n, model.get_dim("nI")) for n in lengths]
        return _unpad(torch2xp(dX, ops=model.ops), lengths)

    return ArgsKwargs(args=(Xt, lengths_t), kwargs={}), convert_dX


def _convert_outputs(
    model: Model, inputs_outputs: Tuple[List[Floats2d], torch.Tensor], is_train: bool
) -> Tuple[List[Floats2d], Callable[[List[Floats2d]], ArgsKwargs]]:
    """Split the padded output tensor back into one array per doc."""
    Xs, Yt = inputs_outputs
    lengths = [len(x) for x in Xs]
    Ys = _unpad(torch2xp(Yt, ops=model.ops), lengths)

    def convert_dY(dYs: List[Floats2d]) -> ArgsKwargs:
        dY, _ = _pad(model, dYs, model.get_dim("nO"))
        dYt = xp2torch(dY, device=Yt.device)
        return ArgsKwargs(args=(Yt,), kwargs={"grad_tensors": dYt})

    return Ys, convert_dY


def PackedBiLSTMLayer(
    width: int, hidden_width: int, depth: int, dropout: float
) -> Model[List[Floats2d], List[Floats2d]]:
    """A thinc layer running a packed bidirectional LSTM over each doc's rows."""
    module = PackedBiLSTM(width, hidden_width, depth=depth, dropout=dropout)
    model: Model[List[Floats2d], List[Floats2d]] = PyTorchWrapper_v2(
        module, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs
    )
    # Swap in the shim that averages the torch weights too (see AveragingPyTorchShim).
    model.shims[0] = AveragingPyTorchShim(module)
    model.set_dim("nI", width)
    model.set_dim("nO", 2 * hidden_width)
    model.name = "packed_bilstm"
    return model


def WindowMaxout(width: int, out_width: int, window: int, dropout: float) -> Model[List[Floats2d], List[Floats2d]]:
    """A Maxout over each row and its `window` neighbours on either side,
    within each sequence (a one-layer convolution): a single matrix product,
    where a second LSTM costs a recurrence step per token, which is what
    single-sentence latency is made of."""
    mix = Maxout(out_width, width * (2 * window + 1), nP=2, normalize=True, dropout=dropout)
    inner = chain(list2ragged(), expand_window(window), with_array(mix), ragged2list())
    model: Model[List[Floats2d], List[Floats2d]] = Model(
        "window_maxout",
        _window_forward,
        init=lambda model, X=None, Y=None: model.layers[0].initialize(),
        layers=[inner],
        dims={"nI": width, "nO": out_width},
        # No padding: the prediction path takes all sequences in one call.
        attrs={"window": window, "pads_to_longest": False},
    )
    # chain(maxout, layernorm, dropout): the first two, for the prediction path
    model.set_ref("maxout", mix.layers[0].layers[0])
    model.set_ref("layernorm", mix.layers[0].layers[1])
    return model


def _window_forward(model: Model, Xs: List[Floats2d], is_train: bool):
    if not any(len(X) for X in Xs):  # thinc's seq2col gives no columns for no rows
        width = model.get_dim("nI")
        return [model.ops.alloc2f(0, model.get_dim("nO")) for _ in Xs], lambda dYs: [
            model.ops.alloc2f(0, width) for _ in dYs
        ]
    if is_train:
        return model.layers[0](Xs, is_train)
    lengths = [len(X) for X in Xs]
    Y = window_rows(model, Xs[0] if len(Xs) == 1 else model.ops.xp.concatenate(Xs), lengths)
    return ([Y] if len(Xs) == 1 else model.ops.unflatten(Y, model.ops.asarray1i(lengths))), no_backprop


def window_rows(model: Model, X: Floats2d, lengths: List[int]) -> Floats2d:
    """WindowMaxout's prediction for the rows X of consecutive sequences of
    these lengths (no window crosses from one into the next): the same maxout
    and layer norm as the training layers, called directly, without the list
    and ragged conversions around them.

    Beyond a few hundred rows, the (2 * window + 1)-times-wider column matrix
    that thinc's expand_window builds costs more in memory traffic than the
    matrix product itself (a quarter of nlp.pipe's time): there each offset's
    product is taken on the rows as they are and shifted into place.
    """
    ops = model.ops
    if not len(X):
        return ops.alloc2f(0, model.get_dim("nO"))
    maxout = model.get_ref("maxout")
    window = model.attrs["window"]
    X = ops.as_contig(X)
    if len(X) <= WINDOW_COLUMNS_MAX_ROWS:
        columns = ops.seq2col(X, window, lengths=ops.asarray1i(lengths))
        return model.get_ref("layernorm").predict(maxout.predict(columns))
    nO, nP, width = maxout.get_dim("nO"), maxout.get_dim("nP"), model.get_dim("nI")
    n_out, xp = nO * nP, ops.xp
    W = ops.reshape3f(maxout.get_param("W"), n_out, 2 * window + 1, width)
    # One product for all offsets: (rows, width) x (width, offsets * n_out).
    # xp.matmul (OpenBLAS on CPU, multi-threaded) measured 2.7x faster here
    # than thinc's single-threaded blis gemm, 1.3x on one thread.
    P = xp.matmul(X, xp.ascontiguousarray(W.transpose(1, 0, 2).reshape(-1, width)).T)
    Y = P[:, window * n_out : (window + 1) * n_out] + ops.reshape1f(maxout.get_param("b"), n_out)
    segment = xp.repeat(xp.arange(len(lengths)), xp.asarray(lengths))
    for offset in range(1, window + 1):
        same = (segment[offset:] == segment[:-offset])[:, None]  # rows t and t + offset
        before = P[:, (window - offset) * n_out : (window - offset + 1) * n_out]
        Y[offset:] += before[:-offset] * same
        after = P[:, (window + offset) * n_out : (window + offset + 1) * n_out]
        Y[:-offset] += after[offset:] * same
    best, _ = ops.maxout(ops.reshape3f(xp.ascontiguousarray(Y), len(X), nO, nP))
    return model.get_ref("layernorm").predict(best)


# Up to this many rows, WindowMaxout predicts through the column matrix (one product).
WINDOW_COLUMNS_MAX_ROWS = 256


def no_backprop(dYs):
    """The backprop callback of a prediction-only (is_train=False) pass."""
    raise ValueError("[rnn_tagger] backprop called on a prediction (is_train=False) pass.")
