"""One benchmark process: one model in one framework, built once, timed on command.

    python -m benchmarks.worker FRAMEWORK MODEL --scratch DIR --threads N

FRAMEWORK is 'jaxdl', 'torch_eager', 'torch_compile' or 'matmul' (MODEL is then ignored: a
2048x2048 float32 matrix product in XLA, the peak the suite compares against). The worker
builds and compiles, prints one JSON line of facts, then answers commands read from stdin,
one JSON line each:

    time N       N training steps back to back -> {"steps_per_s": ...}
    pipeline N   (jaxdl only) N steps, each taking its batch from the input pipeline as the
                 engine's loop does -> {"steps_per_s": ...}
    quit         -> {"peak_mem_mb": ...} (the process's peak resident memory), then exits

Keeping each framework in its own long-lived process lets the suite alternate them round by
round without paying compilation again, and keeps their memory and threads apart.
"""

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MATMUL_SIZE = 2048


def rate(run: Callable[[], Any], wait: Callable[[Any], Any], count: int) -> float:
    start = time.perf_counter()
    out = None
    for _ in range(count):
        out = run()
    wait(out)
    return count / (time.perf_counter() - start)


class JaxdlRunner:
    """The engine's own jitted train step (engine/steps.py) on the reference model's config."""

    def __init__(self, model: str, scratch: Path):
        import jax
        from absl import logging as absl_logging

        from benchmarks.reference import REFERENCES
        from jaxdl.engine import loop
        from jaxdl.engine import steps as steps_lib
        from jaxdl.engine.setup import init_state

        absl_logging.set_verbosity(absl_logging.WARNING)
        self._jax = jax
        plan = loop.setup(REFERENCES[model].make_config(scratch))
        self._feed = steps_lib.open_batch_feed(plan)
        self._chunk = self._feed.next_chunk(0)
        self._step_index = 1
        self._state, self._tally = init_state(plan), steps_lib.zero_tally(plan)
        jitted = steps_lib.make_train_step(plan)
        start = time.perf_counter()
        lowered = jitted.lower(self._state, self._chunk, self._tally)
        self._step = lowered.compile()
        compile_s = time.perf_counter() - start
        cost = self._step.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        devices = len(plan.mesh.devices.flat)
        self.facts = {
            "compile_s": compile_s,
            # XLA costs one device's program; over a data-parallel mesh each does its share.
            "xla_flops_per_step": devices * float((cost or {}).get("flops", 0.0)),
            "parameters": sum(x.size for x in jax.tree.leaves(self._state.params)),
            "devices": devices,
        }

    def _one(self) -> Any:
        self._state, self._tally = self._step(self._state, self._chunk, self._tally)
        return self._tally

    def _one_fed(self) -> Any:
        self._chunk = self._feed.next_chunk(self._step_index)
        self._step_index += 1
        return self._one()

    def time(self, count: int) -> float:
        return rate(self._one, self._jax.block_until_ready, count)

    def pipeline(self, count: int) -> float:
        return rate(self._one_fed, self._jax.block_until_ready, count)


class TorchRunner:
    def __init__(self, model: str, compiled: bool, threads: int):
        from benchmarks.torch_models import make_step, parameter_count

        start = time.perf_counter()
        self._step, _ = make_step(model, compiled=compiled, threads=threads)
        self._step()  # torch.compile compiles on the first call.
        self.facts = {
            "compile_s": time.perf_counter() - start,
            "parameters": parameter_count(model),
        }

    def time(self, count: int) -> float:
        return rate(self._step, lambda out: out, count)


class MatmulRunner:
    def __init__(self):
        import jax
        import jax.numpy as jnp

        self._jax = jax
        keys = jax.random.split(jax.random.PRNGKey(0))
        shape = (MATMUL_SIZE, MATMUL_SIZE)
        self._a, self._b = (jax.random.normal(key, shape, jnp.float32) for key in keys)
        self._product = jax.jit(jnp.matmul).lower(self._a, self._b).compile()
        self.facts = {"flops_per_call": 2 * MATMUL_SIZE**3}

    def time(self, count: int) -> float:
        return rate(lambda: self._product(self._a, self._b), self._jax.block_until_ready, count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("framework", choices=("jaxdl", "torch_eager", "torch_compile", "matmul"))
    parser.add_argument("model")
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    if args.framework == "jaxdl":
        # The process the `jaxdl` command runs in: huge pages for XLA's host buffers.
        from jaxdl.huge_pages import reexec_with_huge_pages

        reexec_with_huge_pages()
        runner: Any = JaxdlRunner(args.model, args.scratch)
    elif args.framework == "matmul":
        runner = MatmulRunner()
    else:
        runner = TorchRunner(args.model, args.framework == "torch_compile", args.threads)
    print(json.dumps(runner.facts), flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "quit":
            break
        steps_per_s = getattr(runner, command)(int(rest[0]))
        print(json.dumps({"steps_per_s": steps_per_s}), flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux.
    print(json.dumps({"peak_mem_mb": peak_mb}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
