"""The batch sizes the model runs at, and padding a batch up to the next one.

On a GPU, the first run of each new input shape pays for cuDNN's convolution algorithm search and for new memory
(measured on an H200: 42 to 450 ms, by search mode), and dynamic batching produces every size from 1 to the
largest. So on a GPU the model runs only at a few fixed sizes, each run once before the service reports ready, and
a batch is padded up to the next of them. On a CPU there is no such search, and a padded row costs as much CPU as a
real one, so every size runs as it is.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

__all__ = ["EVERY", "POWERS_OF_TWO", "model_batch_sizes", "padded_size", "stack_padded"]

EVERY = "every"
POWERS_OF_TWO = "powers-of-two"


def model_batch_sizes(spec: str | Sequence[int], max_batch_size: int) -> tuple[int, ...]:
    """The sizes the model runs at, ascending, the largest always ``max_batch_size``.

    ``spec`` is ``every`` (1 to the largest), ``powers-of-two`` (1, 2, 4, ... and the largest), or sizes of
    one's own; those over ``max_batch_size`` are dropped, since no batch is ever that large.
    """
    if spec == EVERY:
        return tuple(range(1, max_batch_size + 1))
    if spec == POWERS_OF_TWO:
        chosen = {1 << i for i in range(max_batch_size.bit_length())}
    else:
        chosen = set(spec)
    return tuple(sorted({size for size in chosen if 1 <= size < max_batch_size} | {max_batch_size}))


def padded_size(rows: int, sizes: Sequence[int]) -> int:
    """The smallest model batch size that holds ``rows``."""
    index = bisect.bisect_left(sizes, rows)
    if index == len(sizes):
        raise ValueError(f"a batch of {rows} rows is larger than the largest model batch size, {sizes[-1]}")
    return sizes[index]


def stack_padded(rows: Sequence[np.ndarray], size: int, out: np.ndarray | None = None) -> np.ndarray:
    """The (1, ...) ``rows`` as one (size, ...) batch, zeros after them; written into ``out`` when given."""
    if out is None:
        out = np.empty((size, *rows[0].shape[1:]), dtype=rows[0].dtype)
    count = len(rows)
    if count == 1:
        out[0] = rows[0][0]
    else:
        np.concatenate(rows, out=out[:count])
    # Padding rows are computed and thrown away; zeros keep them cheap to reason about (no stale image data).
    out[count:] = 0
    return out
