"""The masked_lm task: BERT's 15% masking with 80/10/10, loss and accuracy over masked tokens."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdl.config import base_config
from jaxdl.data import DatasetSpec, Feature
from jaxdl.errors import UserInputError
from jaxdl.tasks import build_task
from jaxdl.tasks.masked_lm import mask_tokens
from tests.test_cli_errors import assert_error, run_cli
from tests.test_pretrained import _experiment

VOCAB, LENGTH = 50, 12


def test_masking_rates_and_untouched_positions():
    rows, length = 400, 250
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(5, VOCAB, (rows, length)), jnp.int32)
    real = jnp.arange(length)[None, :] < jnp.asarray(rng.integers(1, length + 1, rows))[:, None]
    ids = ids.at[:, 0].set(2)  # A [CLS]-like id that keep_ids protects.
    corrupted, picked = mask_tokens(
        jax.random.key(1), ids, real, rate=0.15, mask_id=VOCAB, vocab_size=VOCAB, keep_ids=(2,)
    )
    ids, corrupted, picked, real = map(np.asarray, (ids, corrupted, picked.astype(bool), real))
    assert not picked[~real].any() and not picked[:, 0].any()
    np.testing.assert_array_equal(corrupted[~picked], ids[~picked])
    eligible = real.copy()
    eligible[:, 0] = False
    assert abs(picked.sum() / eligible.sum() - 0.15) < 0.005
    masked = corrupted[picked] == VOCAB
    kept = corrupted[picked] == ids[picked]
    assert abs(masked.mean() - 0.8) < 0.01
    # 10% kept on purpose, plus the random draws that happen to hit the same id.
    assert abs(kept.mean() - (0.1 + 0.1 / VOCAB)) < 0.01
    assert abs((~masked & ~kept).mean() - 0.1 * (1 - 1 / VOCAB)) < 0.01
    assert corrupted.max() <= VOCAB


class Records:
    """Sequences counting up from a random start: the masked token is predictable."""

    def __init__(self, count: int, seed: int):
        rng = np.random.default_rng(seed)
        self.starts = rng.integers(0, VOCAB, count)
        self.lengths = rng.integers(LENGTH // 2, LENGTH + 1, count)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict:
        ids = (self.starts[index] + np.arange(LENGTH)) % VOCAB
        ids[self.lengths[index] :] = 0
        return {"input": ids.astype(np.int32), "length": np.int32(self.lengths[index])}


def counting_spec() -> DatasetSpec:
    splits = {name: Records(64, seed) for seed, name in enumerate(("train", "validation", "test"))}
    features = {"input": Feature((LENGTH,), "int32"), "length": Feature((), "int32")}
    return DatasetSpec("counting", splits, dict, (LENGTH,), VOCAB, features, vocab_size=VOCAB)


def mlm_config(**task: object) -> ml_collections.ConfigDict:
    config = base_config()
    config.task = ml_collections.ConfigDict({"name": "masked_lm", "mask_rate": 0.15, **task})
    config.model = ml_collections.ConfigDict(
        dict(name="bert", head="mlm", hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64)
    )
    config.model.max_length, config.model.dropout_rate = LENGTH, 0.0
    config.optimizer.learning_rate = 3e-3
    config.schedule.name = "constant"
    config.train.num_steps = 300
    return config


def _batch(spec: DatasetSpec, split: str, rows: int) -> dict:
    records = [spec.splits[split][i] for i in range(rows)]
    return {key: jnp.stack([r[key] for r in records]) for key in records[0]}


def test_training_learns_to_fill_in_masked_tokens():
    spec = counting_spec()
    task = build_task(mlm_config(), spec)
    assert task.model.vocab_size == VOCAB + 1 and task.mask_id == VOCAB  # One id added.
    train = _batch(spec, "train", 64)
    state = task.init_state(jax.random.key(0), train)
    step = jax.jit(task.train_step)
    evaluate = jax.jit(task.eval_step)
    held_out = {**_batch(spec, "validation", 64), "mask": jnp.ones(64)}
    before = evaluate(state, held_out)
    for _ in range(300):
        state, metrics = step(state, train)
    after = evaluate(state, held_out)
    assert np.isfinite(float(metrics["loss"]))
    # The same masks at every evaluation: the count is the same, and a re-run gives the same sums.
    assert float(after["count"]) == float(before["count"]) > 0
    assert jax.tree.map(float, evaluate(state, held_out)) == jax.tree.map(float, after)
    means = task.finalize_eval(jax.tree.map(float, after))
    assert means["accuracy"] > 0.5 > float(before["accuracy"]) / float(before["count"])
    assert means["loss"] < float(before["loss"]) / float(before["count"])


@pytest.mark.parametrize(
    ("task", "model", "words"),
    [
        ({"mask_id": VOCAB}, {}, ["task.mask_id=50", "below the dataset's vocab_size 50"]),
        ({"mask_rate": 0.0}, {}, ["task.mask_rate=0.0"]),
        ({}, {"head": "classify"}, ["model.head='mlm'"]),
    ],
)
def test_bad_settings_are_one_line_errors(task, model, words):
    config = mlm_config(**task)
    config.model.update(model)
    with pytest.raises(UserInputError) as error:
        build_task(config, counting_spec())
    for word in words:
        assert word in str(error.value)


# A whole CLI run (about 30 s); the fast suite trains the task in-process above.
@pytest.mark.slow
def test_masked_lm_run_through_the_cli(capsys, tmp_path, sequence_data_dir):
    sizes = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32, "max_length": 40}
    experiment = _experiment(tmp_path, "algorithmic/brackets", sizes)
    run = tmp_path / "run"
    argv = ["train", "--config", experiment, "--workdir", str(run)]
    argv += [f"--config.data.data_dir={sequence_data_dir}", "--config.model.head=mlm"]
    code, _, err = run_cli(capsys, *argv, "--config.task.name=masked_lm")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["final_metrics"]) == {"test/accuracy", "test/loss"}
    # The experiment's classification head: refused before the workdir is written.
    bad = ["train", "--config", experiment, "--workdir", str(tmp_path / "bad")]
    bad += [f"--config.data.data_dir={sequence_data_dir}", "--config.task.name=masked_lm"]
    assert_error(*run_cli(capsys, *bad)[::2], "model.head='mlm'")
    assert not (tmp_path / "bad").exists()
