"""Checkpoints written by an earlier version of jaxdl still restore, bit for bit.

tests/fixtures/run_v0_1 holds a step-20 checkpoint of `digits_mlp.py:quick` written on one
device by jaxdl 0.1.0 with orbax-checkpoint 0.12.8. If this test fails after an upgrade, old runs
can no longer be resumed: add a migration, don't regenerate the fixture.

The data order changed once, in the engine-throughput work (one permutation per epoch for the
in-memory and streaming pipelines alike, see jaxdl/data/order.py): the stream position an old
checkpoint saved (examples consumed) still restores, but the examples at that position are now
those of the new order, so `next_batch_labels` in expected.json (v0.1's order) is no longer
compared.
"""

import json
import shutil
from pathlib import Path

from jaxdl import data
from jaxdl.data.order import stream_positions
from jaxdl.engine import loop, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.fingerprint import tree_fingerprint

FIXTURE = Path(__file__).parent / "fixtures" / "run_v0_1"


def test_old_checkpoint_restores_state_and_data_position_on_eight_devices(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    expected = json.loads((run_dir / "expected.json").read_text())
    plan = loop.setup(workdir.load_config(run_dir))
    assert plan.mesh.size == 8  # Written on one device, restored replicated over eight.

    checkpointer = Checkpointer(run_dir / "checkpoints", keep=2)
    assert checkpointer.latest_step() == expected["step"]
    iterator = data.train_iterator(
        plan.dataset, batch_size=plan.config.data.batch_size, seed=plan.config.seed
    )
    state, loop_state = checkpointer.restore(expected["step"], plan.abstract_state, iterator)
    checkpointer.close()

    assert tree_fingerprint(state) == expected["state_fingerprint"]
    assert loop_state["best_step"] == expected["best_step"]
    # v0.1 saved {"next_index": 1280}: 20 steps of 64 examples.
    assert iterator.get_state() == {"next_index": expected["step"] * plan.config.data.batch_size}
    train = plan.dataset.splits["train"]
    positions = stream_positions(1280, plan.config.data.batch_size, len(train), plan.config.seed)
    assert next(iterator)["label"].tolist() == [int(train[i]["label"]) for i in positions]


FIXTURE_V0_2 = Path(__file__).parent / "fixtures" / "run_v0_2"


def test_v0_2_checkpoint_with_a_partial_log_window_restores_and_resumes(tmp_path, capsys):
    """jaxdl 0.2.0, `digits_mlp.py:quick` on one device, stopped by SIGTERM after step 25: the
    checkpoint records its version and format and the log window's partial sums (steps 21-25)."""
    from jaxdl.cli import main
    from jaxdl.engine import steps
    from jaxdl.engine.metrics_log import read_records

    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE_V0_2, run_dir)
    expected = json.loads((run_dir / "expected.json").read_text())
    plan = loop.setup(workdir.load_config(run_dir))
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=2)
    checkpointer.check_format(expected["step"])  # Readable by this version.
    feed = steps.open_batch_feed(plan)
    state, loop_state = checkpointer.restore(expected["step"], plan.abstract_state, feed)
    checkpointer.close()
    feed.close()
    assert tree_fingerprint(state) == expected["state_fingerprint"]
    assert json.loads(feed.get_state()) == expected["data_state"]
    assert loop_state["window"]["counted"] == expected["window_counted"]
    assert loop_state["best_step"] == expected["best_step"]

    argv = ["train", "--config", "digits_mlp:quick", "--workdir", str(run_dir)]
    assert main([*argv, "--config.mesh.num_devices=1", "--config.train.progress_bar=False"]) == 0
    assert "resuming at step 25" in capsys.readouterr().out
    train_steps = [r["step"] for r in read_records(run_dir) if r["split"] == "train"]
    assert train_steps == [30, 40]  # The window of step 30 was finished from the saved sums.
