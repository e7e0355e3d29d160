"""Checkpoints written by an earlier version of jaxdl still restore, bit for bit.

tests/fixtures/run_v0_1 holds a step-20 checkpoint of `digits_mlp.py:quick` written on one
device by jaxdl 0.1.0 with orbax-checkpoint 0.12.8. If this test fails after an upgrade, old runs
can no longer be resumed: add a migration, don't regenerate the fixture.
"""

import json
import shutil
from pathlib import Path

from jaxdl import data
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
    assert next(iterator)["label"].tolist() == expected["next_batch_labels"]
