"""The bidirectional LSTM: a torch module that never reads padding, and the
thinc layer around it (lists of arrays <-> one padded tensor, and a PyTorch
shim whose parameter averaging reaches the torch weights)."""
import contextlib
import copy
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy
import torch
from thinc.api import ArgsKwargs, Model, PyTorchShim, PyTorchWrapper_v2, torch2xp, xp2torch
from thinc.types import Floats2d
from torch import nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

from ..util import length_groups
from . import onnx_lstm


def _single_thread_after_fork() -> None:
    """In a forked child, run torch on one thread.

    `nlp.pipe(texts, n_process=N)` forks worker processes. If the parent had
    already used torch's OpenMP thread pool, the first parallel region in the
    child hangs for ever (n_process=2 never returned here). One thread per
    worker avoids it, and with N workers on N cores
    it is the right setting anyway.
    """
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_thread_after_fork)


_WEIGHT_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class PackedBiLSTM(nn.Module):
    """A bidirectional LSTM over zero-padded sequences that never reads padding.

    thinc's PyTorchLSTM and spaCy's TorchBiLSTMEncoder feed the padded batch to
    nn.LSTM, so the backward direction of a short doc starts on padding and a
    doc's output depends on its batch. Here no direction ever reads padding,
    so every doc is processed as if alone. Empty sequences, which
    `pack_padded_sequence` refuses, get zero outputs.

    `dropout` is applied to the LSTM's input and output (and between stacked
    layers), in training mode only: nn.LSTM's own dropout does nothing for a
    single layer.
    """

    def __init__(self, n_in: int, n_hidden: int, depth: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if n_in < 1 or n_hidden < 1 or depth < 1:
            raise ValueError(
                f"[rnn_tagger] BiLSTM sizes must be positive, got input width {n_in}, "
                f"hidden_width {n_hidden}, depth {depth}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"[rnn_tagger] dropout must be in [0, 1), got {dropout}.")
        self.n_out = 2 * n_hidden
        self.input_dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            n_in,
            n_hidden,
            num_layers=depth,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if depth > 1 else 0.0,
        )
        self.output_dropout = nn.Dropout(dropout)
        # One-directional LSTMs of each layer's input width, run with the
        # weights of one direction of self.lstm (see _one_direction). Kept in
        # a tuple so that torch does not register them: they own no weights
        # that count, and the saved state_dict stays that of self.lstm.
        self._directions = tuple(
            nn.LSTM(width, n_hidden, batch_first=True) for width in ([n_in] + ([2 * n_hidden] if depth > 1 else []))
        )

    def forward(self, X: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map the (total, n_in) rows of consecutive sequences of the given
        lengths (a CPU int64 tensor) to their (total, 2 * n_hidden) output rows.

        Rows in, rows out: no padded copy of the whole batch is made. Padding
        exists only inside, per group of similar length in training, where a
        batch of a few hundred sentences of 1 to 100 tokens padded to its
        longest would be several times its words in every array around the
        kernels (dropout, gradients, copies).
        """
        # The checks below read the lengths as a Python list: a single
        # sentence is a few dozen microseconds of work, and each small torch
        # op on the lengths tensor costs about as much.
        lens = lengths.tolist()
        if not lens or min(lens) == max(lens):
            # One sequence, or all of one length: no padding at all, so the
            # rows are already a (batch, length, n_in) tensor and packing
            # would change nothing (its cost dominates for short texts).
            if not lens or lens[0] == 0:
                out = X.new_zeros((0, self.n_out))
                # Keep the graph connected so a backward pass over an all-empty batch is a no-op.
                return out + X.sum() * 0.0 if X.requires_grad else out
            Y, _ = self.lstm(self.input_dropout(X.reshape(len(lens), lens[0], X.shape[1])))
            return self.output_dropout(Y).reshape(X.shape[0], self.n_out)
        if self.training:
            # oneDNN's padded kernels, whose backward pass is far faster on
            # CPU. Prediction: packing, faster for the forward pass alone
            # (BENCHMARKS.md has both measurements).
            return self._run_reversed(X, lens)
        return self._run_packed(X, lens)

    def _run_reversed(self, X: torch.Tensor, lens: List[int]) -> torch.Tensor:
        """Run sequences of similar length together (see length_groups), each
        group padded to its own longest, and gather the output rows back."""
        groups = length_groups(lens)
        if len(groups) == 1:
            groups = [sorted(groups[0])]  # one group keeps the input order
        starts = numpy.cumsum([0] + lens[:-1])
        steps = numpy.arange(max(lens))
        # The zero row appended at the end is what padding positions read.
        rows = nn.functional.pad(X, (0, 0, 0, 1))
        pad_row = X.shape[0]
        outputs, out_index, offset = [], numpy.empty(X.shape[0], dtype=numpy.int64), 0
        for group in groups:
            group_lens = numpy.asarray([lens[i] for i in group])
            width = int(group_lens.max())
            valid = steps[None, :width] < group_lens[:, None]
            index = numpy.where(valid, starts[group][:, None] + steps[None, :width], pad_row)
            Y = self._run_reversed_group(
                rows[torch.from_numpy(index).to(X.device)], torch.from_numpy(group_lens), width
            )
            outputs.append(Y.reshape(-1, self.n_out))
            # Where each of this group's real rows lands in the concatenated outputs.
            out_index[index[valid]] = offset + numpy.flatnonzero(valid)
            offset += index.size
        return torch.cat(outputs)[torch.from_numpy(out_index).to(X.device)]

    def _run_reversed_group(self, X: torch.Tensor, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        """Each direction as its own one-directional pass over the padded batch.

        Padding sits after each row's tokens, so the forward direction never
        reads it before a real token. For the backward direction, each row's
        tokens are reversed in place (padding stays at the end), run forward,
        and put back. Same outputs as packing, but on CPU torch runs padded
        batches through oneDNN's fused LSTM kernels, whose backward pass is
        many times faster than the per-step autograd of a packed sequence.
        The weights are nn.LSTM's own, so saved models are unchanged.
        """
        lstm = self.lstm
        batch = X.shape[0]
        steps = torch.arange(max_len, device=X.device)[None, :]
        lens = lengths.to(X.device)[:, None]
        valid = steps < lens
        order = torch.where(valid, lens - 1 - steps, steps)[:, :, None]
        h0 = X.new_zeros((1, batch, lstm.hidden_size))
        H = self.input_dropout(X)
        for layer in range(lstm.num_layers):
            if layer > 0 and self.training and lstm.dropout > 0:
                H = nn.functional.dropout(H, lstm.dropout, training=True)
            forward = self._one_direction(layer, "", H, h0)
            reverse = self._one_direction(layer, "_reverse", H.gather(1, order.expand(-1, -1, H.shape[2])), h0)
            H = torch.cat([forward, reverse.gather(1, order.expand(-1, -1, reverse.shape[2]))], dim=2)
        return self.output_dropout(H * valid[:, :, None].to(H.dtype))

    def _one_direction(self, layer: int, suffix: str, inputs: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """One direction of one layer of self.lstm over padded inputs: a
        one-directional nn.LSTM called with that direction's weights."""
        template = self._directions[min(layer, 1)]
        weights = {f"{kind}_l0": getattr(self.lstm, f"{kind}_l{layer}{suffix}") for kind in _WEIGHT_KINDS}
        return torch.func.functional_call(template, weights, (inputs, (h0, h0)))[0]

    def _run_packed(self, X: torch.Tensor, lens: List[int]) -> torch.Tensor:
        """Packing: the LSTM steps over each sequence's own tokens only."""
        nonempty = [n for n in lens if n > 0]
        packed = pack_sequence(torch.split(self.input_dropout(X), nonempty), enforce_sorted=False)
        Y, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        valid = torch.arange(Y.shape[1])[None, :] < torch.tensor(nonempty)[:, None]
        return self.output_dropout(Y[valid.to(Y.device)])


class AveragingPyTorchShim(PyTorchShim):
    """A PyTorchShim whose `use_params` finds the optimizer's averages.

    thinc's PyTorchShim.finish_update hands each torch parameter to the
    optimizer under the key (shim.id, name), but its use_params looks for
    string keys "pytorch_{id}_{name}" that nothing writes. So under spaCy's
    default `use_averages = true`, evaluation and saving silently used the raw
    LSTM weights beside averaged thinc weights. This subclass
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
        self._drop_copies()
        try:
            yield
        finally:
            self._model.load_state_dict(backup)
            self._drop_copies()

    # Set by the rnn_tagger component (its int8_inference and lstm_runtime settings).
    int8 = False
    runtime = "torch"
    _int8_model: Any = None
    _onnx_model: Any = None
    _first_param: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        """Copies and pickles leave out the ONNX Runtime session (which can be
        neither; spaCy's resume_training deep-copies the model): the copy
        builds its own on first use."""
        state = self.__dict__.copy()
        state["_onnx_model"] = None
        return state

    def _drop_copies(self) -> None:
        """Forget the int8 and ONNX Runtime copies of the weights: they changed."""
        self._int8_model = None
        self._onnx_model = None

    @property
    def device(self):
        """The module's device. thinc's property walks the submodules for the
        first parameter on every call (a visible share of a single-sentence
        call); moving the module or loading weights keeps the same
        Parameter objects, so one reference stays valid."""
        if self._first_param is None:
            self._first_param = next(self._model.parameters(), None)
            if self._first_param is None:
                return super().device
        return self._first_param.device

    def predict(self, inputs: ArgsKwargs) -> Any:
        """As PyTorchShim.predict, without switching the module to eval() and
        back to train() on every call: each switch walks every submodule, a
        visible share of a single-sentence call. begin_update sets train()
        itself, so leaving the module in eval mode here is safe."""
        if self._model.training:
            self._model.eval()
        if self.runtime == "onnxruntime" and not self.int8:
            fast = self._onnx_predict(*inputs.args)
            if fast is not None:
                return fast
        model = self._quantized() if self.int8 else self._model
        with torch.no_grad():
            if self._mixed_precision:
                with torch.autocast(device_type="cuda", enabled=True):
                    return model(*inputs.args, **inputs.kwargs)
            return model(*inputs.args, **inputs.kwargs)

    def finish_update(self, optimizer) -> None:
        """As thinc's, except that the optimizer gets a copy of each gradient.

        spaCy's Language.rehearse passes a function that only collects the
        (weights, gradient) pairs, and runs the optimizer on them after every
        component's rehearse. thinc's shim zeroes the torch gradient right
        after the call, so the collected LSTM gradients were zeros: rehearsal
        never reached the LSTM, while Adam's step on a zero gradient still
        moved it along its momentum, away from the old model.
        """
        super().finish_update(lambda key, weights, gradient: optimizer(key, weights, gradient.copy()))
        self._drop_copies()  # the weights change in place: no tensor tells

    def from_bytes(self, bytes_data):
        self._drop_copies()
        return super().from_bytes(bytes_data)

    def _onnx_predict(self, X: torch.Tensor, lengths: torch.Tensor) -> Optional[torch.Tensor]:
        """The LSTM's output rows from ONNX Runtime for a single non-empty
        sequence (one sentence: where it is faster, BENCHMARKS.md), else None.
        Built on first use after the weights change, like the int8 copy."""
        if lengths.shape[0] != 1 or X.shape[0] == 0 or not isinstance(self._model, PackedBiLSTM):
            return None
        runtime = self._onnx_model
        if runtime is None or not runtime.usable():
            runtime = self._onnx_model = onnx_lstm.build(self._model.lstm)
            if runtime is None:
                self.runtime = "torch"  # not installed, or not a float32 CPU LSTM
                return None
        return runtime(X)

    def _quantized(self) -> torch.nn.Module:
        """An int8 copy of the module's LSTMs (torch dynamic quantization), built
        on first use after the weights change. Through thinc they change only
        in finish_update, from_bytes and use_params, which all drop the copy."""
        quantized = self._int8_model
        if quantized is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
                quantized = torch.ao.quantization.quantize_dynamic(
                    copy.deepcopy(self._model), {torch.nn.LSTM}, dtype=torch.qint8
                ).eval()
            self._int8_model = quantized
        return quantized


def _convert_inputs(
    model: Model, Xs: List[Floats2d], is_train: bool
) -> Tuple[ArgsKwargs, Callable[[ArgsKwargs], List[Floats2d]]]:
    """The docs' rows as one (total, nI) tensor, plus the lengths.

    The rows are always copied into one new array, even for a single doc.
    With a view of the caller's array instead, an annotate resume test failed
    1 run in 10 on a last digit of a confidence; that test's resumed run also
    cut its batches differently from the full run (annotate no longer does),
    so the view may not have been the cause, but the copy is a small share of
    the LSTM's time and was kept.
    """
    shim = cast(PyTorchShim, model.shims[0])
    lengths = [len(x) for x in Xs]
    width = model.get_dim("nI")
    rows = model.ops.xp.concatenate(Xs) if Xs else model.ops.alloc2f(0, width)
    Xt = xp2torch(rows, requires_grad=is_train, device=shim.device)
    # pack_sequence wants the lengths on the CPU, wherever the data is.
    lengths_t = torch.tensor(lengths, dtype=torch.int64)

    def convert_dX(d_inputs: ArgsKwargs) -> List[Floats2d]:
        dX = d_inputs.args[0]
        if dX is None:
            return [model.ops.alloc2f(n, width) for n in lengths]
        return model.ops.unflatten(torch2xp(dX, ops=model.ops), model.ops.asarray1i(lengths))

    return ArgsKwargs(args=(Xt, lengths_t), kwargs={}), convert_dX


def _convert_outputs(
    model: Model, inputs_outputs: Tuple[List[Floats2d], torch.Tensor], is_train: bool
) -> Tuple[List[Floats2d], Callable[[List[Floats2d]], ArgsKwargs]]:
    """Split the output rows back into one array per doc (views, no copy)."""
    Xs, Yt = inputs_outputs
    lengths = model.ops.asarray1i([len(x) for x in Xs])
    Ys = model.ops.unflatten(torch2xp(Yt, ops=model.ops), lengths)

    def convert_dY(dYs: List[Floats2d]) -> ArgsKwargs:
        if len(dYs) == 1:
            dY = dYs[0]
        else:
            dY = model.ops.xp.concatenate(dYs) if dYs else model.ops.alloc2f(0, model.get_dim("nO"))
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




def set_int8_inference(model: Model, enabled: bool) -> None:
    """Predict with an int8 copy of every BiLSTM in `model` (or stop doing so)."""
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, AveragingPyTorchShim):
                shim.int8 = bool(enabled)


LSTM_RUNTIMES = ("auto", "torch", "onnxruntime")


def set_lstm_runtime(model: Model, runtime: str, component: str = "rnn_tagger") -> None:
    """Run every BiLSTM of `model` in torch ("torch"), or in ONNX Runtime for
    single sentences ("onnxruntime", which needs it installed; "auto" uses it
    where it is installed). Both give the same outputs to 1e-5."""
    if runtime not in LSTM_RUNTIMES:
        raise ValueError(f"[{component}] lstm_runtime must be one of {', '.join(LSTM_RUNTIMES)}, got {runtime!r}.")
    if runtime != "torch":
        available = onnx_lstm.onnxruntime_available()
        if runtime == "onnxruntime" and not available:
            raise ValueError(
                f"[{component}] lstm_runtime = \"onnxruntime\" needs the onnxruntime and onnx packages: "
                "pip install \"spacy-rnn-ner[onnx]\", or set lstm_runtime = \"torch\"."
            )
        runtime = "onnxruntime" if available else "torch"
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, AveragingPyTorchShim):
                shim.runtime = runtime
                shim._onnx_model = None
