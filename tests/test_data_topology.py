"""Restoring the train stream onto another process count (issue 7), and sharded evaluation.

"Processes" here are iterators with shard_index i of shard_count n, as each process of a
multi-process run would open. Every test runs on both dataset kinds: decoded into memory and
streamed through Grain. In index_spec datasets input == label == example index.
"""

import math
import multiprocessing

import numpy as np
import pytest

from jaxdl.data import eval_batches, train_iterator
from jaxdl.data.arrays import in_memory
from tests.data_helpers import index_spec


@pytest.fixture(params=["stream", "memory"])
def pipeline(request) -> str:
    return request.param


def open_processes(spec, shard_count: int, *, batch_size: int, state=None, **kwargs) -> list:
    """One train iterator per process of a `shard_count`-process run, restored from `state`."""
    iterators = [
        train_iterator(
            spec, batch_size=batch_size, seed=11, shard_index=i, shard_count=shard_count, **kwargs
        )
        for i in range(shard_count)
    ]
    if state is not None:
        for iterator in iterators:
            iterator.set_state(state)
    return iterators


def global_batches(iterators: list, count: int) -> list[dict[str, np.ndarray]]:
    """The next `count` global batches: the processes' batches stacked row-wise, in order."""
    batches = []
    for _ in range(count):
        parts = [next(iterator) for iterator in iterators]
        batches.append({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})
    states = {str(iterator.get_state()) for iterator in iterators}
    assert len(states) == 1  # Every process writes the same state: any one of them restores.
    return batches


def close_all(iterators: list) -> None:
    for iterator in iterators:
        iterator.close()


def labels(batches: list[dict[str, np.ndarray]]) -> list[int]:
    return [int(label) for batch in batches for label in batch["label"]]


@pytest.mark.parametrize("kind", ["digits", "digits_in_memory"])
def test_two_processes_give_the_one_process_stream(kind, request):
    """Real digits (1,257 train examples), 30 global batches of 100: over two epochs."""
    spec = request.getfixturevalue(kind)
    one = open_processes(spec, 1, batch_size=100)
    two = open_processes(spec, 2, batch_size=50)
    for expected, got in zip(global_batches(one, 30), global_batches(two, 30), strict=True):
        assert expected.keys() == got.keys() == {"input", "label"}
        for key in expected:
            assert got[key].dtype == expected[key].dtype
            np.testing.assert_array_equal(got[key], expected[key])
    assert two[0].get_state() == one[0].get_state() == {"next_index": 3000}
    close_all(one + two)


@pytest.mark.parametrize(
    ("before", "after"), [(2, 1), (1, 2), (4, 2), (2, 4), (3, 1)], ids=lambda n: f"{n}p"
)
def test_topology_change_mid_epoch_sees_every_example_once(pipeline, before, after):
    """Global batches of 12 over 43 examples: the change falls mid-epoch (after 24), and the
    epoch ends mid-batch. Resumed, the global stream is the uninterrupted one."""
    spec = in_memory(index_spec(43), pipeline)
    global_batch, num_examples = 12, 43
    reference = global_batches(open_processes(spec, 1, batch_size=global_batch), 8)

    first = open_processes(spec, before, batch_size=global_batch // before)
    seen = global_batches(first, 2)
    state = first[-1].get_state()
    assert state == {"next_index": 2 * global_batch}
    close_all(first)
    resumed = open_processes(spec, after, batch_size=global_batch // after, state=state)
    seen += global_batches(resumed, 6)
    close_all(resumed)

    assert labels(seen) == labels(reference)
    epoch = labels(seen)[:num_examples]
    assert sorted(epoch) == list(range(num_examples))  # Each example once: none skipped.
    for batch in seen:  # The inputs are the examples the labels name.
        np.testing.assert_array_equal(batch["input"][:, 0], batch["label"])


def test_workers_change_neither_the_batches_nor_the_state():
    spec = index_spec(23)
    reference = labels(global_batches(open_processes(spec, 1, batch_size=4), 12))
    children = set(multiprocessing.active_children())
    with_workers = train_iterator(spec, batch_size=4, seed=11, worker_count=2)
    assert labels(global_batches([with_workers], 5)) == reference[:20]
    state = with_workers.get_state()
    assert state == {"next_index": 20}
    # Restoring an iterator whose workers run rebuilds it at that batch, with new workers.
    with_workers.set_state({"next_index": 8})
    assert labels(global_batches([with_workers], 2)) == reference[8:16]
    assert len(set(multiprocessing.active_children()) - children) == 2
    with_workers.close()
    assert set(multiprocessing.active_children()) - children == set()  # close() stops them.
    with pytest.raises(ValueError, match="closed"):
        next(with_workers)

    without = open_processes(spec, 1, batch_size=4, state=state)
    assert labels(global_batches(without, 2)) == reference[20:28]
    # Then two processes, one of them with workers, from the worker-less run's state.
    state = without[0].get_state()
    two = [
        train_iterator(spec, batch_size=2, seed=11, shard_index=i, shard_count=2, worker_count=w)
        for i, w in enumerate((0, 2))
    ]
    for iterator in two:
        iterator.set_state(state)
    assert labels(global_batches(two, 5)) == reference[28:48]
    close_all(without + two)


def test_old_state_forms_restore_as_examples_consumed(pipeline):
    spec = in_memory(index_spec(12), pipeline)
    reference = labels(global_batches(open_processes(spec, 1, batch_size=4), 6))
    # jaxdl's earlier Grain pipeline, one process: examples consumed.
    plain = open_processes(spec, 1, batch_size=4, state={"next_index": 12})
    assert labels(global_batches(plain, 3)) == reference[12:]
    # The same with data.worker_count=2 (Grain's mp_prefetch state after 3 batches of 4); that
    # pipeline's order differed, so only the position carries over.
    with_workers = {
        "next_index_in_cycle": 1,
        "next_index_in_datasets": 2,
        "iterators_in_use_indices": [0, 1],
        "iterators_in_use_states": [{"next_index": 8}, {"next_index": 4}],
        "exhausted": [0, 0],
        "future_states": {},
    }
    resumed = open_processes(spec, 2, batch_size=2, state=with_workers)
    assert resumed[0].get_state() == {"next_index": 12}
    assert labels(global_batches(resumed, 3)) == reference[12:]
    close_all(plain + resumed)


def test_a_changed_global_batch_is_refused(pipeline):
    spec = in_memory(index_spec(12), pipeline)
    (iterator,) = open_processes(spec, 1, batch_size=4)
    with pytest.raises(ValueError, match="global batch size changed"):
        iterator.set_state({"next_index": 6})
    with pytest.raises(ValueError, match="no 'next_index'"):
        iterator.set_state({"position": 4})
    assert iterator.get_state() == {"next_index": 0}  # Unchanged by the refused states.
    iterator.close()


# Evaluation.


@pytest.mark.parametrize("shard_count", [1, 2, 3])
def test_eval_shards_cover_each_example_once(pipeline, shard_count):
    spec = in_memory(index_spec(10), pipeline)
    batch_size = 3
    shards = [
        list(
            eval_batches(
                spec, "test", batch_size=batch_size, shard_index=i, shard_count=shard_count
            )
        )
        for i in range(shard_count)
    ]
    global_batch = batch_size * shard_count
    assert {len(batches) for batches in shards} == {math.ceil(10 / global_batch)}
    real = []
    for k in range(len(shards[0])):
        for i, batches in enumerate(shards):
            batch = batches[k]
            assert batch["input"].shape == (batch_size, 1) and batch["mask"].dtype == np.float32
            start = k * global_batch + i * batch_size
            rows = list(range(start, min(start + batch_size, 10)))
            assert batch["mask"].tolist() == [1.0] * len(rows) + [0.0] * (batch_size - len(rows))
            assert batch["label"].tolist() == rows + [0] * (batch_size - len(rows))
            real += batch["label"][batch["mask"] == 1].tolist()
    assert real == list(range(10))  # In order, each example once.


def test_sharded_eval_is_the_same_streamed_and_in_memory(digits, digits_in_memory):
    """360 test examples, 3 processes of 100: process 1 and 2 end on an all-padding batch."""
    for shard_index in range(3):
        pairs = list(
            zip(
                eval_batches(
                    digits, "test", batch_size=100, shard_index=shard_index, shard_count=3
                ),
                eval_batches(
                    digits_in_memory, "test", batch_size=100, shard_index=shard_index, shard_count=3
                ),
                strict=True,
            )
        )
        assert len(pairs) == 2
        for streamed, decoded in pairs:
            assert streamed.keys() == decoded.keys() == {"input", "label", "mask"}
            for key in streamed:
                assert streamed[key].dtype == decoded[key].dtype
                np.testing.assert_array_equal(streamed[key], decoded[key])
        assert pairs[-1][0]["mask"].sum() == (60 if shard_index == 0 else 0)
