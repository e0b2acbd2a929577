"""An ONNX Runtime copy of a bidirectional nn.LSTM, for single-sentence calls.

For one short sentence torch's LSTM is dominated by the cost of each small op
it dispatches per time step; ONNX Runtime runs the whole recurrence inside one
kernel call, about half the time on the CPU for a 20-token sentence
(BENCHMARKS.md, "Speed and memory on CPU" and "Prediction fast paths"). The
graph is built here from the module's own weights (one ONNX `LSTM` node per
layer), so there is no export step and nothing extra is saved.

onnxruntime and onnx are an optional extra (`pip install spacy-rnn-ner[onnx]`);
without them the torch path runs.
"""
import importlib.util
import os
from typing import Any, Optional

import numpy
import torch

# The ONNX LSTM node's gates are ordered input, output, forget, cell; torch's
# are input, forget, cell, output.
_TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


def onnxruntime_available() -> bool:
    """Whether onnxruntime and onnx are installed. Found, not imported: the
    import takes about half a second, paid on the first single sentence."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def _gates(weight: numpy.ndarray) -> numpy.ndarray:
    """Reorder the four gate blocks of a torch LSTM weight or bias to ONNX's order."""
    blocks = numpy.split(weight, 4, axis=0)
    return numpy.concatenate([blocks[i] for i in _TORCH_TO_ONNX_GATES], axis=0)


def _model_bytes(lstm: torch.nn.LSTM) -> bytes:
    """A serialized ONNX graph computing `lstm` (bidirectional) over one
    sequence: a (T, 1, nI) float32 input to a (T, 2, 1, H) output, which is
    the (T, 2H) rows of both directions side by side."""
    from onnx import TensorProto, helper, numpy_helper

    hidden = lstm.hidden_size
    state = {name: value.detach().cpu().numpy() for name, value in lstm.state_dict().items()}
    nodes, initializers = [], []
    current = "X"
    for layer in range(lstm.num_layers):
        weights = {}
        for kind in ("weight_ih", "weight_hh"):
            weights[kind] = numpy.stack([_gates(state[f"{kind}_l{layer}{suffix}"]) for suffix in ("", "_reverse")])
        bias = numpy.stack(
            [
                numpy.concatenate([_gates(state[f"bias_ih_l{layer}{suffix}"]), _gates(state[f"bias_hh_l{layer}{suffix}"])])
                for suffix in ("", "_reverse")
            ]
        )
        names = [f"W{layer}", f"R{layer}", f"B{layer}"]
        for name, value in zip(names, (weights["weight_ih"], weights["weight_hh"], bias)):
            initializers.append(numpy_helper.from_array(numpy.ascontiguousarray(value, dtype="float32"), name))
        output = f"Y{layer}"
        # ONNX Runtime's CPU LSTM takes time-major input only (layout 0).
        nodes.append(helper.make_node("LSTM", [current] + names, [output], hidden_size=hidden, direction="bidirectional"))
        if layer + 1 < lstm.num_layers:
            # The next layer reads both directions side by side: (T, 1, 2H).
            initializers.append(numpy_helper.from_array(numpy.asarray([0, 1, -1], dtype="int64"), f"shape{layer}"))
            nodes.append(helper.make_node("Reshape", [output, f"shape{layer}"], [f"H{layer}"]))
            current = f"H{layer}"
        else:
            current = output
    graph = helper.make_graph(
        nodes,
        "bilstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", 1, lstm.input_size])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["T", 2, 1, hidden])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()


class OnnxBiLSTM:
    """Runs a bidirectional nn.LSTM's forward pass over one sequence (the rows
    of one sentence) in ONNX Runtime. For batches torch is faster: its kernels
    spread the batch over the cores.

    One intra-op thread: for a sentence the recurrence is sequential, and a
    thread pool would only add wake-ups (and would not survive `n_process`'s
    fork). The session is built from the weights as they are now; the owner
    drops it whenever they change.
    """

    def __init__(self, lstm: torch.nn.LSTM) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            _model_bytes(lstm), options, providers=["CPUExecutionProvider"]
        )
        self._output: str = self._session.get_outputs()[0].name
        self._pid = os.getpid()
        self.n_out = 2 * lstm.hidden_size

    def usable(self) -> bool:
        """False in a forked child, which builds its own session."""
        return self._pid == os.getpid()

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """(T, nI) float32 CPU rows of one sequence -> its (T, 2H) output rows."""
        inputs = X.detach().numpy().reshape(X.shape[0], 1, X.shape[1])
        Y = self._session.run([self._output], {"X": inputs})[0]
        return torch.from_numpy(Y.reshape(-1, self.n_out))


def build(lstm: torch.nn.LSTM) -> Optional[Any]:
    """An OnnxBiLSTM for `lstm`, or None where ONNX Runtime cannot run it
    (not installed, or the module is not a float32 bidirectional CPU LSTM)."""
    first = next(lstm.parameters())
    if not lstm.bidirectional or not lstm.batch_first or first.dtype != torch.float32 or first.device.type != "cpu":
        return None
    if lstm.proj_size or not lstm.bias or not onnxruntime_available():
        return None
    try:
        return OnnxBiLSTM(lstm)
    except ImportError:  # installed but broken: the torch path still works
        return None
