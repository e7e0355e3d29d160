"""Adversarial robustness: the attacks (tasks/adversarial.py) on a tiny model, adversarial
training runs, and `jaxdl attack` (understanding/attack.py) on a quick run, bad input included.
"""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.cli import main
from jaxdl.tasks.adversarial import Attack, cross_entropy_per_example, per_example_norm, perturb
from tests.test_cli_errors import assert_error, run_cli, snapshot

ADVERSARIAL_QUICK = "digits_cnn_adversarial:quick"


def tiny_classifier(seed: int = 0):
    """A two-layer tanh network on 16 inputs in [0, 1], 4 classes: (loss_fn, inputs)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    w1 = jax.random.normal(keys[0], (16, 32)) * 1.5
    w2 = jax.random.normal(keys[1], (32, 4)) * 1.5
    inputs = jax.random.uniform(keys[2], (64, 16))
    labels = jax.random.randint(keys[3], (64,), 0, 4)

    def loss_fn(x):
        return cross_entropy_per_example(jnp.tanh(x @ w1) @ w2, labels)

    return loss_fn, inputs


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_perturbation_stays_in_eps_ball_and_input_range(method, norm):
    loss_fn, inputs = tiny_classifier()
    eps = 0.1 if norm == "linf" else 0.5
    attack = Attack.create(method, eps, norm, (0.0, 1.0), steps=10, restarts=2)
    adversarial, losses = jax.jit(lambda x, k: perturb(loss_fn, x, attack, k))(
        inputs, jax.random.PRNGKey(1)
    )
    distance = per_example_norm(adversarial - inputs, norm)
    assert float(distance.max()) <= eps * (1 + 1e-5)
    assert float(distance.max()) > 0.5 * eps  # It moved: the ball is used, not avoided.
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    np.testing.assert_allclose(losses, loss_fn(adversarial), rtol=1e-5)


def test_eps_is_scaled_to_the_input_range():
    pixels = Attack.create("pgd", 0.1, "linf", (0.0, 255.0), steps=20)
    assert pixels.eps == pytest.approx(25.5) and pixels.step_size == pytest.approx(2.5 * 25.5 / 20)
    assert (pixels.low, pixels.high) == (0.0, 255.0)
    unknown = Attack.create("pgd", 0.1, "l2", None, steps=20, step_size=0.03)
    assert (unknown.eps, unknown.step_size, unknown.low) == (0.1, 0.03, None)


def test_pgd_raises_the_loss_over_clean_and_fgsm():
    loss_fn, inputs = tiny_classifier()
    key = jax.random.PRNGKey(0)
    clean = loss_fn(inputs)
    _, fgsm = perturb(loss_fn, inputs, Attack.create("fgsm", 0.1, "linf", (0.0, 1.0)), key)
    _, pgd = perturb(loss_fn, inputs, Attack.create("pgd", 0.1, "linf", (0.0, 1.0), steps=20), key)
    assert bool(jnp.all(fgsm >= clean)) and bool(jnp.all(pgd >= clean))
    assert float(fgsm.mean()) > float(clean.mean())
    assert float(pgd.mean()) > float(fgsm.mean())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_lower_the_loss_found(norm):
    loss_fn, inputs = tiny_classifier(seed=3)
    key = jax.random.PRNGKey(7)
    found = [
        perturb(loss_fn, inputs, Attack.create("pgd", 0.3, norm, (0.0, 1.0), 5, 0, n), key)[1]
        for n in (1, 3)
    ]
    assert bool(jnp.all(found[1] >= found[0]))
    assert float(found[1].mean()) > float(found[0].mean())  # Some example gained.


# Adversarial training and `jaxdl attack` on quick runs.


def _train(run_dir: Path, *overrides: str) -> Path:
    argv = ["train", "--config", ADVERSARIAL_QUICK, "--workdir", str(run_dir), *overrides]
    assert main(argv) == 0
    return run_dir


def _log(run_dir: Path, split: str = "train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == split]


@pytest.fixture(scope="module")
def adversarial_run(tmp_path_factory):
    """A finished quick PGD-trained CNN run; tests copy it, never change it."""
    return _train(tmp_path_factory.mktemp("adversarial") / "run")


def test_adversarial_run_trains_and_is_deterministic(adversarial_run, tmp_path):
    first = _log(adversarial_run)
    assert first[-1]["loss"] < first[0]["loss"]
    assert all(np.isfinite(row["loss"]) for row in first)
    again = _train(tmp_path / "again")
    assert _log(again) == first  # Same seed: the same attacks, bit for bit.
    summary = json.loads((again / "summary.json").read_text())
    assert (
        summary["final_metrics"]
        == json.loads((adversarial_run / "summary.json").read_text())["final_metrics"]
    )


def test_trades_run_logs_its_kl_term(tmp_path):
    run = _train(
        tmp_path / "trades", "--config.task.adversarial=trades", "--config.train.num_steps=20"
    )
    rows = _log(run)
    assert rows and all(row["trades_kl"] >= 0 and np.isfinite(row["loss"]) for row in rows)
    assert any(row["trades_kl"] > 0 for row in rows)


def test_attack_prints_both_accuracies_and_writes_files(adversarial_run, capsys, tmp_path):
    out = tmp_path / "attack"
    before = snapshot(adversarial_run)
    argv = ["attack", "--workdir", str(adversarial_run), "--method", "pgd", "--eps", "0.1"]
    code, stdout, err = run_cli(capsys, *argv, "--steps", "3", "--out", str(out))
    assert code == 0, err
    assert "clean accuracy" in stdout and "robust accuracy" in stdout
    result = json.loads((out / "attack.json").read_text())
    assert result["examples_attacked"] == 360 and result["input_range"] == [0.0, 1.0]
    assert 0 <= result["robust_accuracy"] <= 1
    code, stdout, err = run_cli(capsys, "eval", "--workdir", str(adversarial_run))
    assert code == 0, err
    # The clean pass is the evaluation's: the same checkpoint, split and inference mode.
    assert result["clean_accuracy"] == pytest.approx(json.loads(stdout)["accuracy"])
    assert (out / "adversarial_examples.png").stat().st_size > 1000
    assert snapshot(adversarial_run) == before  # The run is only read.


def test_attack_num_limits_the_examples(adversarial_run, capsys):
    argv = ["attack", "--workdir", str(adversarial_run), "--method", "fgsm", "--norm", "l2"]
    code, stdout, err = run_cli(capsys, *argv, "--eps", "0.5", "--num", "50")
    assert code == 0, err
    assert json.loads(stdout[: stdout.rindex("}") + 1])["examples_attacked"] == 50


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--method", "cw"], ["--method cw", "fgsm, pgd"]),
        (["--norm", "l1"], ["--norm l1", "linf, l2"]),
        (["--eps", "0"], ["--eps 0.0", "> 0"]),
        (["--eps", "-0.1"], ["--eps -0.1", "> 0"]),
        (["--steps", "0"], ["--steps 0"]),
        (["--restarts", "0"], ["--restarts 0"]),
    ],
    ids=["method", "norm", "eps_zero", "eps_negative", "steps", "restarts"],
)
def test_attack_bad_flags_exit_2(adversarial_run, capsys, flags, words):
    code, _, err = run_cli(capsys, "attack", "--workdir", str(adversarial_run), *flags)
    assert_error(code, err, *words)


def test_attack_refuses_an_existing_out(adversarial_run, capsys, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "attack", "--workdir", str(adversarial_run), "--out", str(out))
    assert_error(code, err, f"--out {out} exists")
    assert snapshot(tmp_path) == before


def test_attack_refuses_a_missing_or_non_classifier_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "attack", "--workdir", str(tmp_path / "nowhere"))
    assert_error(code, err, "config.json not found")
    code, config_json, _ = run_cli(capsys, "train", "--config", "karate_club", "--show_config")
    assert code == 0
    graph_run = tmp_path / "graph"
    graph_run.mkdir()
    (graph_run / "config.json").write_text(config_json)
    code, _, err = run_cli(capsys, "attack", "--workdir", str(graph_run))
    assert_error(code, err, "jaxdl attack measures classifiers")


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("--config.task.adversarial=pgdd", ["config.task.adversarial", "fgsm, pgd, trades"]),
        ("--config.task.adversarial_eps=0", ["config.task.adversarial_eps", "> 0"]),
        ("--config.task.adversarial_norm=l1", ["config.task.adversarial_norm", "linf, l2"]),
        ("--config.task.adversarial_steps=0", ["config.task.adversarial_steps", "at least 1"]),
    ],
    ids=["method", "eps", "norm", "steps"],
)
def test_bad_adversarial_fields_exit_2_before_the_workdir(capsys, tmp_path, override, words):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "--config", ADVERSARIAL_QUICK, "--workdir", str(run_dir), override
    )
    assert_error(code, err, *words)
    assert not run_dir.exists()


def test_quick_adversarial_config_copies_cleanly(adversarial_run, tmp_path):
    """The run's own config resumes as finished: the new fields compare equal."""
    copy = tmp_path / "run"
    shutil.copytree(adversarial_run, copy, symlinks=True)
    argv = ["train", "--config", ADVERSARIAL_QUICK, "--workdir", str(copy)]
    assert main(argv) == 0
