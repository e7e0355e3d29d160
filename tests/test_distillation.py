"""Knowledge distillation: the loss on hand-computed cases, a frozen teacher inside the step, a
distilled run through the CLI that resumes bit-exactly, and bad input.

The teacher is the session's quick CNN run (`reference_run`); the student is the quick MLP.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.cli import parse_config
from jaxdl.engine import init_from
from jaxdl.engine.setup import setup
from jaxdl.optim import param_paths
from jaxdl.tasks.distillation import distillation_loss
from tests.run_helpers import assert_stopped_run_resumes_identically
from tests.test_cli_errors import QUICK, run_cli
from tests.test_cli_errors import train_quick as train


def test_distillation_loss_matches_hand_computed_kl():
    student = jnp.array([[0.0, 0.0]])
    teacher = jnp.array([[math.log(3.0), 0.0]])
    # T = 1: teacher (3/4, 1/4), student (1/2, 1/2).
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    np.testing.assert_allclose(distillation_loss(student, teacher, 1.0), [kl], rtol=1e-6)
    # T = 2: the teacher's logits halve, so its probabilities are sqrt(3):1; times T^2 = 4.
    high = math.sqrt(3) / (1 + math.sqrt(3))
    kl2 = high * math.log(high / 0.5) + (1 - high) * math.log((1 - high) / 0.5)
    np.testing.assert_allclose(distillation_loss(student, teacher, 2.0), [4 * kl2], rtol=1e-6)
    # Identical outputs: nothing to learn.
    np.testing.assert_allclose(distillation_loss(teacher, teacher, 3.0), [0.0], atol=1e-7)


def test_teacher_is_frozen_inside_the_train_step(reference_run, tmp_path):
    overrides = [f"--config.distill.teacher={reference_run}", "--config.distill.alpha=0.5"]
    plan = setup(parse_config(QUICK, overrides))
    state = init_from.start_state(plan, tmp_path, lambda line: None)
    teacher_arrays = init_from.read_arrays(str(reference_run), init_from.locate(str(reference_run)))
    paths, leaves, _ = param_paths(jax.device_get(state.teacher))
    assert paths and all(
        np.array_equal(leaf, teacher_arrays[path]) for path, leaf in zip(paths, leaves, strict=True)
    )
    step = jax.jit(plan.task.train_step)
    batch = {k: v for k, v in plan.example_batch().items()}
    batch["input"] = np.random.default_rng(0).random(batch["input"].shape, np.float32)
    before = jax.device_get(state.params)
    for _ in range(3):
        state, metrics = step(state, batch)
    # The student moved, the teacher did not, and the loss is the stated mix.
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params)), strict=True
        )
    )
    after = jax.tree.leaves(jax.device_get(state.teacher))
    assert all(np.array_equal(a, b) for a, b in zip(leaves, after, strict=True))
    mix = 0.5 * metrics["label_loss"] + 0.5 * metrics["distill_loss"]
    np.testing.assert_allclose(metrics["loss"], mix, rtol=1e-6)


def test_distilled_run_resumes_bit_exactly(reference_run, tmp_path, monkeypatch, capsys):
    # The quick MLP config shifts its images: the teacher sees the same augmented batch.
    options = (f"--config.distill.teacher={reference_run}", "--config.train.checkpoint_every=10")
    whole = assert_stopped_run_resumes_identically(
        lambda workdir: train(workdir, *options), tmp_path, monkeypatch, capsys, at_step=25
    )
    assert whole["distill_teacher"]["workdir"] == str(reference_run)
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").open()]
    assert any("distill_loss" in r for r in records if r["split"] == "train")


def test_bad_teacher_or_weights_exit_2(capsys, tmp_path, finished_run):
    def fails(*overrides: str, match: str) -> None:
        code, _, err = run_cli(
            capsys, "train", "--config", QUICK, "--workdir", str(tmp_path / "w"), *overrides
        )
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and match in err, err
        assert not (tmp_path / "w").exists()

    fails(f"--config.distill.teacher={tmp_path / 'nope'}", match="config.distill.teacher=")
    fails(
        f"--config.distill.teacher={finished_run}",
        "--config.distill.alpha=1.5",
        match="config.distill.alpha",
    )
    fails(
        f"--config.distill.teacher={finished_run}",
        "--config.distill.temperature=0",
        match="config.distill.temperature",
    )
    fails("--config.quant.scheme=int2", match="config.quant.scheme=int2")
    fails("--config.quant.scheme=int8", "--config.quant.mode=static", match="config.quant.mode")
