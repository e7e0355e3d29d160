"""Facts about a run that the loop records: where it computes, and how fast it trains."""

import time
from typing import Any

import jax

from jaxdl.engine.setup import Setup


def topology(plan: Setup) -> dict[str, Any]:
    """Where a run computes, as its checkpoints record it."""
    return {
        "devices": plan.mesh.size,
        "processes": jax.process_count(),
        "mesh": {axis: int(size) for axis, size in plan.mesh.shape.items()},
        "mode": plan.config.mesh.get("mode", "jit"),
    }


def describe_topology(where: dict[str, Any]) -> str:
    mesh = " ".join(f"{axis}={size}" for axis, size in where.get("mesh", {}).items())
    return (
        f"{where.get('devices', '?')} device(s) in {where.get('processes', '?')} process(es) "
        f"(mesh {mesh or '?'}, {where.get('mode', 'jit')})"
    )


class Throughput:
    """Steady-state steps/s: counts only stretches of pure training, after the first (compiling) step."""

    def __init__(self, steps: int = 0, seconds: float = 0.0):
        self.steps, self.seconds = steps, seconds
        self._start: tuple[float, int] | None = None

    def start(self, step: int) -> None:
        self._start = (time.perf_counter(), step)

    def stop(self, step: int) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start[0]
            self.steps += step - self._start[1]
            self._start = None

    @property
    def steps_per_second(self) -> float | None:
        return self.steps / self.seconds if self.seconds > 0 else None
