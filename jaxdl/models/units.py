"""The output units (neurons, channels) of a model's hidden layers, for structured pruning.

A model that supports it has a method `unit_layers() -> list[UnitLayer]`: for each hidden layer,
which arrays its units index. Pruning a unit zeroes what produces it (its kernel column, its
bias, the scale and shift of the batch norm after it), so it outputs exactly zero; shrinking then
drops it from those arrays, from the batch-norm statistics and from the next layer's inputs, and
rebuilds the model with the smaller widths (`shrunk_fields`). The classifier head is never a
unit layer. Paths are parameter paths as optim.param_paths writes them ('Dense_0/kernel').
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class UnitLayer:
    name: str
    width: int
    produced: tuple[tuple[str, int], ...]  # (param path, axis): zeroed when a unit is pruned.
    consumed: tuple[tuple[str, int], ...]  # (param path, axis): the next layer's inputs.
    stats: tuple[tuple[str, int], ...] = ()  # (model-state path, axis), e.g. batch-norm means.

    @property
    def kernel(self) -> str:
        """The path of the kernel whose unit columns score the units."""
        return self.produced[0][0]


def dense_chain(
    widths: list[int], batch_norm: bool, first_dense: int = 0, first_norm: int = 0
) -> list[UnitLayer]:
    """Dense_{first_dense + i} layers of `widths` units, each followed by BatchNorm_j when
    `batch_norm`, the last feeding the next Dense (the head, or another hidden layer)."""
    units = []
    for i, width in enumerate(widths):
        dense, norm = f"Dense_{first_dense + i}", f"BatchNorm_{first_norm + i}"
        units.append(
            UnitLayer(
                name=dense,
                width=width,
                produced=((f"{dense}/kernel", -1), *_shift(dense, norm, batch_norm)),
                consumed=((f"Dense_{first_dense + i + 1}/kernel", 0),),
                stats=_norm_stats(norm, batch_norm),
            )
        )
    return units


def _shift(layer: str, norm: str, batch_norm: bool) -> tuple[tuple[str, int], ...]:
    """A layer's per-unit shift: the batch norm's scale and bias, or the layer's own bias."""
    if batch_norm:
        return ((f"{norm}/scale", 0), (f"{norm}/bias", 0))
    return ((f"{layer}/bias", 0),)


def _norm_stats(norm: str, batch_norm: bool) -> tuple[tuple[str, int], ...]:
    if not batch_norm:
        return ()
    return ((f"batch_stats/{norm}/mean", 0), (f"batch_stats/{norm}/var", 0))


def conv_chain(widths: list[int], batch_norm: bool, consumer_after_last: str) -> list[UnitLayer]:
    """Conv_i layers of `widths` channels (each followed by BatchNorm_i when `batch_norm`); the
    last one's channels feed `consumer_after_last` (a dense kernel after global pooling)."""
    units = []
    for i, width in enumerate(widths):
        conv = f"Conv_{i}"
        last = i == len(widths) - 1
        consumer = (consumer_after_last, 0) if last else (f"Conv_{i + 1}/kernel", -2)
        units.append(
            UnitLayer(
                name=conv,
                width=width,
                produced=((f"{conv}/kernel", -1), *_shift(conv, f"BatchNorm_{i}", batch_norm)),
                consumed=(consumer,),
                stats=_norm_stats(f"BatchNorm_{i}", batch_norm),
            )
        )
    return units
