"""Array helpers shared by the model layers and the tag lattice: grouping
sequences by length, padding them into one array, and the backprop callback
of a prediction-only pass."""
from typing import Any, Callable, List, Optional, Sequence, TypeVar

import numpy

T = TypeVar("T")


def length_groups(lengths: Sequence[int]) -> List[List[int]]:
    """Indices of the non-empty sequences, grouped by similar length.

    Batched work (an LSTM, a dynamic program) pads every sequence to the
    longest of its batch; grouping keeps one long doc from making every short
    one pay for its padding (no group's longest member is more than about
    twice its shortest).
    """
    active = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: lengths[i])
    groups: List[List[int]] = []
    for i in active:
        if not groups or lengths[i] > 2 * lengths[groups[-1][0]] + 8:
            groups.append([])
        groups[-1].append(i)
    return groups


def map_length_groups(
    items: Sequence[Any], lengths: Sequence[int], run: Callable[[List[Any]], Sequence[T]], empty: Callable[[], T]
) -> List[T]:
    """`run` over the items in groups of similar length, results back in input order.

    Items of length 0 are not passed to `run`; they get `empty()`.
    """
    out: List[Optional[T]] = [None] * len(items)
    for group in length_groups(lengths):
        for i, result in zip(group, run([items[i] for i in group])):
            out[i] = result
    return [empty() if result is None else result for result in out]


def pad(arrays: Sequence[Any], width: int, *, fill: float = 0.0, dtype: str = "f", xp: Any = numpy) -> Any:
    """Stack (n_i, width) arrays into one (batch, max n_i, width) array, filling the rest."""
    max_len = max((len(a) for a in arrays), default=0)
    shape = (len(arrays), max_len, width)
    # zeros needs no pass over the memory to fill it (calloc's zeroed pages)
    out = xp.zeros(shape, dtype=dtype) if fill == 0 else xp.full(shape, fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def no_backprop(d_outputs: Any) -> Any:
    """The backprop callback of a prediction-only (is_train=False) pass."""
    raise ValueError("[rnn_tagger] backprop called on a prediction (is_train=False) pass.")
