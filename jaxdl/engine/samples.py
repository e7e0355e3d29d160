"""`jaxdl sample`: text from a language-model run's checkpoint. It writes nothing.

Token ids are bytes (the byte-level datasets: stdlib_chars, the TFDS text configs), so the
prompt is encoded as UTF-8 and the sample decoded back, invalid sequences shown as U+FFFD.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.engine.evaluation import restore_checkpoint
from jaxdl.errors import UserInputError
from jaxdl.text.generate import generate


@dataclasses.dataclass(frozen=True)
class SampleOptions:
    prompt: str
    max_new_tokens: int = 200
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num: int = 1

    def check(self) -> None:
        if not self.prompt:
            raise UserInputError("--prompt is empty; give at least one character to continue.")
        if self.max_new_tokens < 1:
            raise UserInputError(f"--max_new_tokens {self.max_new_tokens}: must be at least 1.")
        if self.temperature < 0:
            raise UserInputError(f"--temperature {self.temperature}: must be >= 0 (0: greedy).")
        if self.top_k < 0:
            raise UserInputError(f"--top_k {self.top_k}: must be >= 0 (0: no top-k filter).")
        if not 0.0 < self.top_p <= 1.0:
            raise UserInputError(f"--top_p {self.top_p}: must be in (0, 1] (1: no filter).")
        if self.num < 1:
            raise UserInputError(f"--num {self.num}: must be at least 1.")


def sample_text(run_dir: Path, which: str, options: SampleOptions) -> list[str]:
    """`options.num` continuations of the prompt by checkpoint `which` of a language-model run."""
    options.check()
    plan, _, state = restore_checkpoint(run_dir, which)
    model = getattr(plan.task, "model", None)
    if plan.config.task.name != "language_model" or not getattr(model, "has_kv_cache", False):
        raise UserInputError(
            f"{run_dir} is a {plan.config.task.name!r} run with model "
            f"{plan.config.model.name!r}; jaxdl sample needs a language_model run of a model "
            "with a KV cache (model.name='gpt')."
        )
    prompt = np.frombuffer(options.prompt.encode("utf-8"), np.uint8).astype(np.int32)
    total = len(prompt) + options.max_new_tokens
    if total > model.max_length:
        raise UserInputError(
            f"the prompt ({len(prompt)} bytes) plus --max_new_tokens {options.max_new_tokens} "
            f"exceed the model's max_length {model.max_length}; ask for fewer tokens."
        )
    params = jax.device_get(state.params)
    tokens = generate(
        model,
        params,
        jnp.tile(jnp.asarray(prompt)[None], (options.num, 1)),
        jax.random.PRNGKey(options.seed),
        max_new_tokens=options.max_new_tokens,
        temperature=float(options.temperature),
        top_k=int(options.top_k),
        top_p=float(options.top_p),
    )
    return [decode_bytes(row) for row in np.asarray(tokens)]


def decode_bytes(ids: np.ndarray) -> str:
    """Token ids as text: each id a byte, UTF-8 decoded; ids past 255 are dropped."""
    ids = np.asarray(ids)
    return bytes(ids[ids < 256].astype(np.uint8)).decode("utf-8", errors="replace")
