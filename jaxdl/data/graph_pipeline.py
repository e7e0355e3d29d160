"""Graph datasets in the pipeline: the train stream and eval passes as packs (graphs.py).

A graph dataset's `DatasetSpec.batching` is a `GraphBatching`: the engine then asks it, not the
row stacker, for the example batch, the train iterator and the eval batches. Its splits are
`GraphRecords`: the graphs decoded once at load (graph datasets here are small next to their
packs), with their sizes, so packing is index arithmetic plus one concatenation per key.

The train order is the same global stream as every other dataset's (order.py: one permutation
of the split per epoch, fixed by `seed`). A pack takes graphs from it while they fit, so the
iterator state is the stream position, {'next_index'}, and a resumed run packs the same graphs
into the same batches. Eval passes pack each split in its stored order.
"""

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np

from jaxdl.data.graphs import (
    Batch,
    Budgets,
    Graph,
    GraphFeature,
    budgets_for,
    empty_pack,
    graph_size,
    pack,
    pack_count,
)
from jaxdl.data.order import stream_positions
from jaxdl.data.spec import Feature
from jaxdl.errors import UserInputError


class GraphRecords:
    """One split's graphs in memory, with their (nodes, edges, links) sizes."""

    def __init__(self, graphs: Sequence[Graph], features: Mapping[str, GraphFeature]):
        self.graphs = list(graphs)
        self.sizes = np.array([graph_size(g, features) for g in self.graphs], np.int64)
        self.sizes = self.sizes.reshape(len(self.graphs), 3)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> Graph:
        return self.graphs[int(index)]


@dataclasses.dataclass(frozen=True, eq=False)
class GraphBatching:
    """How a graph dataset becomes batches: packs of up to `batch_size` graphs.

    Budgets come from the train split's size statistics and the largest graph of any split
    (graphs.budgets_for); `max_nodes`/`max_edges` > 0 fix them (data.max_nodes, data.max_edges).
    """

    features: Mapping[str, GraphFeature]
    splits: Mapping[str, GraphRecords]
    max_nodes: int = 0
    max_edges: int = 0

    def __post_init__(self) -> None:
        for field in ("max_nodes", "max_edges"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserInputError(
                    f"data.{field}={value!r} must be an integer >= 0 (0: chosen from the data)."
                )
        for name, records in self.splits.items():
            if not len(records):
                raise UserInputError(f"the {name} split of this graph dataset has no graphs.")

    @functools.cache  # noqa: B019 (one batching per loaded dataset; a few batch sizes at most)
    def budgets(self, batch_size: int) -> Budgets:
        largest = np.max([records.sizes.max(axis=0) for records in self.splits.values()], axis=0)
        return budgets_for(
            self.splits["train"].sizes,
            batch_size,
            largest=largest,
            nodes=self.max_nodes,
            edges=self.max_edges,
        )

    def item_features(self) -> dict[str, Feature]:
        """Per node/edge/graph/link shapes, as the data contract's `features`."""
        return {key: Feature(f.shape, f.dtype) for key, f in self.features.items()}

    def example_batch(self, batch_size: int) -> Batch:
        """An all-padding pack with the budgets of `batch_size` graphs."""
        return empty_pack(self.features, self.budgets(batch_size))

    def train_iterator(
        self, records: GraphRecords, *, batch_size: int, seed: int, shard_count: int = 1
    ) -> "GraphTrainIterator":
        _check_one_process(shard_count)
        return GraphTrainIterator(records, self.features, self.budgets(batch_size), seed)

    def eval_batches(
        self, records: GraphRecords, *, batch_size: int, shard_count: int = 1
    ) -> Iterator[Batch]:
        """Packs of the split's graphs in order, each with 'mask' = its graph mask."""
        _check_one_process(shard_count)
        budgets = self.budgets(batch_size)
        start = 0
        while start < len(records):
            count = pack_count(records.sizes[start:], budgets)
            yield pack(records.graphs[start : start + count], self.features, budgets)
            start += count


class GraphTrainIterator(grain.DatasetIterator):
    """Endless packs from the train split's global stream; state {'next_index': position}."""

    def __init__(
        self,
        records: GraphRecords,
        features: Mapping[str, GraphFeature],
        budgets: Budgets,
        seed: int,
    ):
        super().__init__()
        self._records = records
        self._features = features
        self._budgets = budgets
        self._seed = seed
        self._position = 0

    def __next__(self) -> Batch:
        indices = stream_positions(
            self._position, self._budgets.max_graphs, len(self._records), self._seed
        )
        count = pack_count(self._records.sizes[indices], self._budgets)
        self._position += count
        return pack([self._records[i] for i in indices[:count]], self._features, self._budgets)

    def get_state(self) -> dict[str, Any]:
        return {"next_index": self._position}

    def set_state(self, state: dict[str, Any]) -> None:
        if "next_index" not in state:
            raise ValueError(f"not a graph train state: {dict(state)!r} has no 'next_index'.")
        self._position = int(state["next_index"])

    def __str__(self) -> str:
        return f"GraphTrainIterator(state={self.get_state()}, budgets={self._budgets})"


def _check_one_process(shard_count: int) -> None:
    if shard_count != 1:
        raise UserInputError(
            f"graph datasets run in one process for now, not {shard_count}: a pack's node "
            "indices are local to the process that packed it. Launch one process (it may still "
            "drive several devices)."
        )
