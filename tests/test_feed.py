"""engine/feed.py: several steps' batches per transfer, and the data position a checkpoint saves."""

import numpy as np
import pytest

from jaxdl.data import train_iterator
from jaxdl.engine import sharding
from jaxdl.engine.feed import BatchFeed, select_batch, steps_per_transfer
from tests.data_helpers import index_spec


def _batch_of(feed: BatchFeed, step: int) -> list[int]:
    chunk = feed.next_chunk(step)
    return np.asarray(select_batch(chunk, np.int32(step))["label"]).tolist()


@pytest.mark.parametrize("devices", [1, 8])
def test_feed_gives_the_iterator_batches_in_order_and_resumes_mid_chunk(devices):
    mesh = sharding.make_mesh(num_devices=devices)
    reference = train_iterator(index_spec(10), batch_size=8, seed=4)
    expected = [next(reference)["label"].tolist() for _ in range(9)]
    feed = BatchFeed(train_iterator(index_spec(10), batch_size=8, seed=4), mesh, 4)
    assert [_batch_of(feed, step) for step in range(6)] == expected[:6]
    chunk = feed.next_chunk(5)
    assert chunk["label"].shape == (4, 8) and chunk["label"].sharding.spec[1] == ("data", "fsdp")
    # After step 5 a checkpoint holds the position of 6 batches, not of the 8 read ahead.
    state = feed.get_state()
    assert b'"next_index": 48' in state

    resumed = BatchFeed(train_iterator(index_spec(10), batch_size=8, seed=4), mesh, 4)
    resumed.set_state(state)
    assert [_batch_of(resumed, step) for step in range(6, 9)] == expected[6:]
    for iterator in (reference, feed, resumed):
        iterator.close()


def test_steps_per_transfer_keeps_transfers_bounded():
    assert steps_per_transfer(16 * 2**10) == 64  # Small batches: capped at 64 steps.
    assert steps_per_transfer(2 * 2**20) == 16
    assert steps_per_transfer(100 * 2**20) == 1  # Large batches go one at a time.
