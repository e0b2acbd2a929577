"""The PyTorch modules our thinc layers wrap."""
import os

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def _single_thread_after_fork() -> None:
    """In a forked child, run torch on one thread.

    `nlp.pipe(texts, n_process=N)` forks worker processes. If the parent had
    already used torch's OpenMP thread pool, the first parallel region in the
    child hangs for ever (GUIDE trap 9; measured here: n_process=2 never
    returned). One thread per worker avoids it, and with N workers on N cores
    it is the right setting anyway.
    """
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_thread_after_fork)


class PackedBiLSTM(nn.Module):
    """A bidirectional LSTM over zero-padded sequences that never reads padding.

    thinc's PyTorchLSTM and spaCy's TorchBiLSTMEncoder feed the padded batch to
    nn.LSTM, so the backward direction of a short doc starts on padding and a
    doc's output depends on its batch (GUIDE trap 1). Here the batch is packed,
    so every doc is processed alone. Empty sequences, which
    `pack_padded_sequence` refuses (trap 2), get zero outputs.

    `dropout` is applied to the LSTM's input and output (and between stacked
    layers), in training mode only: nn.LSTM's own dropout does nothing for a
    single layer (trap 8).
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

    def forward(self, X: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map (batch, max_len, n_in) inputs and CPU int64 lengths to (batch, max_len, 2 * n_hidden)."""
        batch, max_len = X.shape[0], X.shape[1]
        nonempty = lengths > 0
        n_nonempty = int(nonempty.sum())
        if n_nonempty == 0 or max_len == 0:
            out = X.new_zeros((batch, max_len, self.n_out))
            # Keep the graph connected so a backward pass over an all-empty batch is a no-op.
            return out + X.sum() * 0.0 if X.requires_grad else out
        if n_nonempty == batch:
            if bool((lengths == max_len).all()):
                # No padding at all (e.g. a single doc): packing would change
                # nothing, so skip its cost, which dominates for short texts.
                Y, _ = self.lstm(self.input_dropout(X))
                return self.output_dropout(Y)
            return self._run(X, lengths, max_len)
        index = nonempty.nonzero().squeeze(1)
        Y = self._run(X[index.to(X.device)], lengths[index], max_len)
        out = X.new_zeros((batch, max_len, self.n_out))
        return out.index_copy(0, index.to(X.device), Y)

    def _run(self, X: torch.Tensor, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.input_dropout(X), lengths, batch_first=True, enforce_sorted=False
        )
        Y, _ = self.lstm(packed)
        Y, _ = pad_packed_sequence(Y, batch_first=True, total_length=max_len)
        return self.output_dropout(Y)
