"""GPU figures: the reference suite in bfloat16, GPT-2 small's tokens/s and MFU, ResNet-50 images/s.

    python -m benchmarks.gpu --out DIR            # on a GPU machine; one JSON line per result,
                                                  # also appended to DIR/gpu_results.jsonl
    python -m benchmarks.gpu --quick              # tiny shapes: checks the script on any backend

Each model is jaxdl's own: the registry's module, the task's train step and the optimizer from
the experiment config, jitted with the state donated, as the engine runs it. The input pipeline
is left out (a device-resident random batch) so the figure is the step's: GPU machines lent here
have no Grain or TFDS installed, and the CPU suite measures the pipeline's share separately.

FLOPs are analytic, as in reference.py. GPT-2 small counts 6 x (parameters less the position
table) + 12 x layers x sequence x width per token (attention's two products, forward and
backward), the usual model-FLOPs convention; MFU divides by the dense bf16 peak (989 TFLOP/s for
the H100 SXM, the figure the issue names; the H200 has the same compute).
"""

import argparse
import functools
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.worker import rate

H100_BF16_PEAK = 989e12
PARTS = ("peak", "gpt2", "resnet50", "suite")


def _spec(input_shape: tuple[int, ...], classes: int, vocab: int = 0) -> SimpleNamespace:
    """The few DatasetSpec fields that build_task reads."""
    features = {"input": SimpleNamespace(shape=input_shape)}
    return SimpleNamespace(
        input_shape=input_shape, num_classes=classes, vocab_size=vocab, features=features
    )


def _timed_step(
    config: Any, spec: SimpleNamespace, batch: dict, steps: int, trace: Path | None = None
) -> dict:
    """Compile the task's train step on `batch` and time `steps` back-to-back updates."""
    import jax

    from jaxdl.tasks import build_task

    task = build_task(config, spec)
    state = jax.jit(task.init_state)(jax.random.PRNGKey(0), batch)
    step = jax.jit(task.train_step, donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    carry = [state, None]  # The donated state and the last metrics, threaded through `one`.

    def one() -> Any:
        carry[0], carry[1] = compiled(carry[0], batch)
        return carry[1]

    rate(one, jax.block_until_ready, 3)  # Warm-up: allocator and autotuning settle.
    steps_per_s = rate(one, jax.block_until_ready, steps)
    if trace is not None:  # A profile of three more steps, for tensorboard / xprof.
        with jax.profiler.trace(str(trace)):
            rate(one, jax.block_until_ready, 3)
    state, metrics = carry
    params = sum(x.size for x in jax.tree.leaves(state.params))
    loss = float(metrics["loss"])
    return {
        "compile_s": round(compile_s, 2),
        "steps_per_s": steps_per_s,
        "parameters": int(params),
        "final_loss": loss,
    }


def _images(shape: tuple[int, ...], batch: int, classes: int) -> dict:
    import jax
    import jax.numpy as jnp

    key_x, key_y = jax.random.split(jax.random.PRNGKey(1))
    return {
        "input": jax.random.normal(key_x, (batch, *shape), jnp.float32),
        "label": jax.random.randint(key_y, (batch,), 0, classes),
    }


def _tokens(batch: int, length: int, vocab: int) -> dict:
    import jax

    tokens = jax.random.randint(jax.random.PRNGKey(2), (batch, length + 1), 0, vocab)
    return {"input": tokens[:, :-1], "target": tokens[:, 1:]}


def matmul_peak(size: int) -> float:
    """bf16 FLOP/s of one size^3 matrix product, mean of 10 after 3 warm-ups."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0))
    a, b = (jax.random.normal(k, (size, size), jnp.bfloat16) for k in keys)
    product = jax.jit(jnp.matmul)
    rate(lambda: product(a, b), jax.block_until_ready, 3)  # Warm-up.
    return 2 * size**3 * rate(lambda: product(a, b), jax.block_until_ready, 10)


def suite_bf16(quick: bool, steps: int, sink: Path | None) -> list[dict]:
    """The CPU suite's reference models (reference.py), model.dtype='bfloat16'."""
    from benchmarks.reference import REFERENCES

    records = []
    for name, ref in REFERENCES.items():
        if quick and name != "mlp":
            continue
        config = ref.make_config(Path("/nonexistent"))  # Image paths are never read here.
        config.model.dtype = "bfloat16"
        if config.task.name == "language_model":
            length = 128 if name == "gpt" else 64
            config.task.context = 0
            spec, batch = _spec((length,), 256, 256), _tokens(ref.batch_size, length, 256)
        else:
            shape = {"mlp": (784,), "cnn": (28, 28, 1), "resnet18": (32, 32, 3)}[name]
            spec, batch = _spec(shape, 10), _images(shape, ref.batch_size, 10)
        result = _timed_step(config, spec, batch, steps)
        result.update(
            model=name,
            samples_per_s=result["steps_per_s"] * ref.batch_size,
            tflops_per_s=result["steps_per_s"] * ref.train_flops_per_step / 1e12,
        )
        records.append(result)
        _emit(result, sink)
    return records


def gpt2_small(
    quick: bool,
    steps: int,
    batch_size: int,
    attention: str,
    sink: Path | None,
    trace: Path | None = None,
) -> dict:
    """GPT-2 small (124M: 12 x 768, 12 heads, sequence 1024, tied embeddings) in bf16, AdamW."""
    from benchmarks.reference import REFERENCES

    layers, width, heads, length = (2, 128, 4, 128) if quick else (12, 768, 12, 1024)
    vocab = 50304  # GPT-2's 50257 rounded up to a multiple of 128, as is usual for speed.
    config = REFERENCES["gpt"].make_config(Path("/nonexistent"))
    config.task.context = 0
    config.model.update(
        hidden_size=width,
        num_layers=layers,
        num_heads=heads,
        mlp_dim=4 * width,
        max_length=length,
        tie_embeddings=True,
        dtype="bfloat16",
        attention=attention,
    )
    result = _timed_step(
        config, _spec((length,), vocab, vocab), _tokens(batch_size, length, vocab), steps, trace
    )
    matmul_params = result["parameters"] - length * width  # The position table is a lookup.
    flops_per_token = 6 * matmul_params + 12 * layers * length * width
    tokens_per_s = result["steps_per_s"] * batch_size * length
    result.update(
        model="gpt2_small" + ("_quick" if quick else ""),
        batch=batch_size,
        attention=attention,
        tokens_per_s=tokens_per_s,
        model_tflops_per_s=tokens_per_s * flops_per_token / 1e12,
        mfu_vs_989=tokens_per_s * flops_per_token / H100_BF16_PEAK,
    )
    _emit(result, sink)
    return result


def resnet50(quick: bool, steps: int, batch_size: int, sink: Path | None) -> dict:
    """ResNet-50 (ImageNet stem, 224x224x3, 1000 classes) in bf16, SGD momentum 0.9."""
    from benchmarks.reference import REFERENCES

    side = 64 if quick else 224
    config = REFERENCES["resnet18"].make_config(Path("/nonexistent"))
    config.model.update(depth=50, stem="imagenet", dtype="bfloat16")
    shape = (side, side, 3)
    result = _timed_step(config, _spec(shape, 1000), _images(shape, batch_size, 1000), steps)
    result.update(
        model="resnet50" + ("_quick" if quick else ""),
        batch=batch_size,
        images_per_s=result["steps_per_s"] * batch_size,
    )
    _emit(result, sink)
    return result


def _emit(record: dict, sink: Path | None) -> None:
    """Prints the record as one JSON line and appends it to `sink` (if any) as it comes, so a
    run cut short by its time limit still leaves what it measured."""
    line = json.dumps(record)
    print(line, flush=True)
    if sink is not None:
        with sink.open("a") as out:
            out.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu_results.jsonl")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few steps")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated")
    parser.add_argument("--gpt2-batches", default="16,32", help="batch sizes to try")
    parser.add_argument("--gpt2-attention", default="auto", help="comma-separated: auto,cudnn,xla")
    parser.add_argument("--trace", type=Path, default=None, help="profile GPT-2's steps here")
    parser.add_argument("--resnet50-batches", default="128,256", help="batch sizes to try")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(
            f"error: --parts: unknown {', '.join(unknown)}; choose from {','.join(PARTS)}.",
            file=sys.stderr,
        )
        return 2
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            print(f"error: --out {args.out} is a file; give a folder.", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
    sink = None if args.out is None else args.out / "gpu_results.jsonl"

    import jax

    from jaxdl.models.layers import resolve_dtype

    resolve_dtype("bfloat16")  # Fails here, not mid-run, if the package cannot load.
    device = jax.devices()[0]
    facts = {"jax": jax.__version__, "device": device.device_kind}
    _emit({**facts, "backend": jax.default_backend()}, sink)
    quick, steps = args.quick, 3 if args.quick else 20
    jobs: list[tuple[str, Callable[[], Any]]] = []
    if "peak" in parts:
        size = 256 if quick else 8192
        jobs.append(("peak", lambda: _emit({"bf16_matmul_tflops": matmul_peak(size) / 1e12}, sink)))
    if "gpt2" in parts:
        for b in [int(b) for b in args.gpt2_batches.split(",")]:
            for a in args.gpt2_attention.split(","):
                run = functools.partial(gpt2_small, quick, steps, b, a, sink, args.trace)
                jobs.append(("gpt2", run))
    if "resnet50" in parts:
        for b in (2,) if quick else [int(b) for b in args.resnet50_batches.split(",")]:
            jobs.append(("resnet50", functools.partial(resnet50, quick, steps, b, sink)))
    if "suite" in parts:
        jobs.append(("suite", functools.partial(suite_bf16, quick, 5 if quick else 50, sink)))
    failed = 0
    for name, job in jobs:
        try:
            job()
        except Exception as error:  # One failing part must not cost the others' figures.
            failed += 1
            _emit({"part": name, "error": f"{type(error).__name__}: {error}"[:2000]}, sink)
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
