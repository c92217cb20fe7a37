"""The model's batch sizes and padding up to them."""

from __future__ import annotations

import numpy as np
import pytest

from resnet_service.inference.batch_sizes import EVERY, POWERS_OF_TWO, model_batch_sizes, padded_size, stack_padded


def test_every_size_up_to_the_largest() -> None:
    assert model_batch_sizes(EVERY, 8) == (1, 2, 3, 4, 5, 6, 7, 8)


def test_powers_of_two_end_at_the_largest_batch_even_when_it_is_not_one() -> None:
    assert model_batch_sizes(POWERS_OF_TWO, 32) == (1, 2, 4, 8, 16, 32)
    assert model_batch_sizes(POWERS_OF_TWO, 24) == (1, 2, 4, 8, 16, 24)
    assert model_batch_sizes(POWERS_OF_TWO, 1) == (1,)


def test_own_sizes_drop_those_no_batch_reaches_and_always_hold_the_largest() -> None:
    assert model_batch_sizes((16, 1, 4, 64), 32) == (1, 4, 16, 32)
    assert model_batch_sizes((8,), 8) == (8,)


def test_a_batch_pads_to_the_smallest_size_that_holds_it() -> None:
    sizes = (1, 2, 4, 8)
    assert [padded_size(n, sizes) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(ValueError, match="larger than the largest model batch size, 8"):
        padded_size(9, sizes)


def test_stacked_rows_keep_their_order_and_the_padding_is_zeros() -> None:
    rows = [np.full((1, 2, 2, 3), value, dtype=np.float32) for value in (1.0, 2.0, 3.0)]
    batch = stack_padded(rows, 4)
    assert batch.shape == (4, 2, 2, 3)
    assert [float(batch[i].mean()) for i in range(4)] == [1.0, 2.0, 3.0, 0.0]


def test_stacking_into_a_reused_buffer_clears_the_last_batch() -> None:
    out = np.full((4, 2, 2, 3), 7.0, dtype=np.float32)
    stack_padded([np.ones((1, 2, 2, 3), dtype=np.float32)], 4, out=out)
    assert float(out[0].min()) == 1.0 and not out[1:].any()
