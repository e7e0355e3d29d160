"""Hugging Face BERT import and export (jaxdl/pretrained.py, init_from=hf:DIR, export-hf).

The fixture tests/fixtures/tiny_bert is a tiny random BertForMaskedLM saved by transformers,
with the reference library's token ids and outputs in reference.npz; it was written by
scripts/make_tiny_bert_fixture.py, so these tests need neither torch nor the network. The one
test that loads an export back into transformers is skipped where transformers is missing.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from jaxdl import pretrained
from jaxdl.cli import parse_config
from jaxdl.data import DatasetSpec, Feature, datasets
from jaxdl.engine import loop, steps, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.evaluation import restore_checkpoint
from jaxdl.engine.setup import init_state
from jaxdl.export_hf import byte_tokenizer
from jaxdl.models.bert import Bert, BertEncoder
from jaxdl.pretrained import load_hf_encoder
from tests.test_cli_errors import assert_error, run_cli, snapshot

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_bert"
REFERENCE = dict(np.load(FIXTURE / "reference.npz"))
SENTENCES = json.loads((FIXTURE / "reference.json").read_text())["sentences"]
TOLERANCE = 1e-4
LENGTH = 16  # Tokens per example of the fine-tuning dataset.
SIZES = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "mlp_dim": 64, "max_length": 48}


@pytest.fixture(scope="module")
def encoder():
    return load_hf_encoder(FIXTURE)


def test_token_ids_equal_the_reference_tokenizer(encoder):
    batch = encoder.tokenize(SENTENCES, max_length=24)
    short = encoder.tokenize(SENTENCES, max_length=8)  # Truncated, [SEP] kept.
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].dtype == np.int32
        np.testing.assert_array_equal(batch[key], REFERENCE[key])
        np.testing.assert_array_equal(short[key], REFERENCE[f"short_{key}"])
    assert encoder.tokenize(SENTENCES[:1], 24, pad_to_max_length=True)["input_ids"].shape == (1, 24)


def test_hidden_states_match_the_reference_with_padding(encoder):
    batch = encoder.tokenize(SENTENCES, max_length=24)
    hidden = encoder(batch)
    assert hidden.dtype == jnp.float32 and hidden.shape == (4, 24, 32)
    np.testing.assert_allclose(hidden, REFERENCE["hidden"], atol=TOLERANCE, rtol=0)
    typed = encoder({**batch, "token_type_ids": REFERENCE["typed_token_type_ids"]})
    np.testing.assert_allclose(typed, REFERENCE["typed_hidden"], atol=TOLERANCE, rtol=0)
    assert isinstance(encoder.variables["params"]["word_embeddings"]["embedding"], jax.Array)


def test_unprefixed_names_and_the_masked_lm_head(tmp_path, encoder):
    # BertModel saves its names without the 'bert.' prefix.
    plain = tmp_path / "plain"
    shutil.copytree(FIXTURE, plain)
    weights = safetensors.numpy.load_file(plain / "model.safetensors")
    renamed = {name.removeprefix("bert."): value for name, value in weights.items()}
    safetensors.numpy.save_file(renamed, plain / "model.safetensors", metadata={"format": "pt"})
    batch = encoder.tokenize(SENTENCES, max_length=24)
    np.testing.assert_allclose(
        load_hf_encoder(plain)(batch), REFERENCE["hidden"], atol=TOLERANCE, rtol=0
    )
    # The checkpoint's masked-LM head maps onto Bert(head='mlm').
    fields, arrays = pretrained.checkpoint_params(FIXTURE)
    model = Bert(num_classes=2, head="mlm", **fields)
    params = {}
    for path, value in arrays.items():
        node = params
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(value)
    logits = jax.jit(model.apply, static_argnames="train")(
        {"params": params},
        batch["input_ids"][:1],
        train=False,
        attention_mask=batch["attention_mask"][:1],
    )
    np.testing.assert_allclose(logits, REFERENCE["mlm_logits"], atol=TOLERANCE, rtol=0)


def _broken(tmp_path: Path, change) -> Path:
    target = tmp_path / "broken"
    shutil.copytree(FIXTURE, target)
    change(target)
    return target


def _edit_config(**fields):
    def change(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, **fields}))

    return change


def _pickle_only(directory: Path) -> None:
    (directory / "model.safetensors").unlink()
    (directory / "pytorch_model.bin").write_bytes(b"not unpickled")


BAD_CHECKPOINTS = {
    "no_safetensors": (
        lambda d: (d / "model.safetensors").unlink(),
        ["model.safetensors is missing", "safetensors only"],
    ),
    "pickle_only": (_pickle_only, ["pytorch_model.bin", "pickle", "never loads", "safetensors"]),
    "no_config": (lambda d: (d / "config.json").unlink(), ["config.json is missing"]),
    "no_tokenizer": (lambda d: (d / "tokenizer.json").unlink(), ["tokenizer.json is missing"]),
    "model_type": (_edit_config(model_type="gpt2"), ["model_type='gpt2' is not supported", "bert"]),
    "shape": (_edit_config(hidden_size=64), ["bert.embeddings", "has shape", "hidden_size=64"]),
    "activation": (_edit_config(hidden_act="relu"), ["hidden_act='relu'"]),
    "bad_weights": (
        lambda d: (d / "model.safetensors").write_bytes(b"xx"),
        ["not a readable safetensors"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_one_line_errors(tmp_path, case):
    change, words = BAD_CHECKPOINTS[case]
    with pytest.raises(pretrained.UserInputError) as error:
        load_hf_encoder(_broken(tmp_path, change))
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


# init_from=hf:DIR and export-hf, through the CLI, on a tiny dataset tokenised with the fixture.


@dataclasses.dataclass(frozen=True)
class Records:
    examples: tuple

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


@dataclasses.dataclass(frozen=True)
class AsArrays:
    def __call__(self, record: dict) -> dict:
        return {key: np.asarray(value, np.int32) for key, value in record.items()}


def load_tiny_text(**_) -> DatasetSpec:
    """Word salad from the fixture's vocabulary; label 1 when 'fox' is in it."""
    encoder = load_hf_encoder(FIXTURE)
    words = ["the", "string", "copy", "of", "fox", "text", "with", "return", "a"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(64)]
    batch = encoder.tokenize(texts, LENGTH, pad_to_max_length=True)
    examples = [
        {"input": ids, "length": mask.sum(), "label": int("fox" in text)}
        for ids, mask, text in zip(batch["input_ids"], batch["attention_mask"], texts, strict=True)
    ]
    splits = {"train": examples[:32], "validation": examples[32:48], "test": examples[48:]}
    scalar = Feature((), "int32")
    return DatasetSpec(
        name="tiny_text",
        splits={name: Records(tuple(split)) for name, split in splits.items()},
        preprocess=AsArrays(),
        input_shape=(LENGTH,),
        num_classes=2,
        features={"input": Feature((LENGTH,), "int32"), "length": scalar, "label": scalar},
        vocab_size=encoder.model.vocab_size,
    )


EXPERIMENT = """
from ml_collections import ConfigDict
from jaxdl.config import base_config

def get_config():
    config = base_config()
    config.data.name = "{data}"
    config.data.batch_size = 8
    config.data.eval_batch_size = 8
    config.model = ConfigDict(dict(name="bert", dtype="float32", head="classify", dropout_rate=0.1,
                                   type_vocab_size=2, **{sizes}))
    config.optimizer.learning_rate = 1e-3
    config.train.num_steps = 2
    config.train.log_every = 1
    config.train.eval_every = 2
    config.train.checkpoint_every = 2
    config.train.progress_bar = False
    return config
"""


def _experiment(tmp_path: Path, data: str, sizes: dict) -> str:
    path = tmp_path / f"bert_{data.replace('/', '_')}.py"
    path.write_text(EXPERIMENT.format(data=data, sizes=sizes))
    return str(path)


@pytest.fixture
def tiny_text(monkeypatch, tmp_path):
    monkeypatch.setitem(datasets._LOADERS, "tiny_text", load_tiny_text)
    return _experiment(tmp_path, "tiny_text", SIZES)


def test_finetune_from_hf_then_export_round_trip(capsys, tmp_path, tiny_text, encoder):
    run = tmp_path / "run"
    frozen = "--config.optimizer.frozen=('backbone',)"  # Only the new classifier trains.
    argv = ["train", "--config", tiny_text, "--workdir", str(run), frozen]
    code, out, err = run_cli(capsys, *argv, f"--config.init_from=hf:{FIXTURE}")
    assert code == 0, err
    head = "params/classifier/bias (absent)->(2,), params/classifier/kernel (absent)->(32,2)"
    pooler = "params/pooler/bias (absent)->(32,), params/pooler/kernel (absent)->(32,32)"
    assert (
        f"jaxdl: init_from hf:{FIXTURE.resolve()}: copied 37 arrays; re-initialised {head}, {pooler}\n"
        in out
    )
    record = json.loads((run / "summary.json").read_text())["init_from"]
    assert record["hf"] == str(FIXTURE.resolve()) and record["copied"] == 37
    assert (run / "hf_source" / "tokenizer.json").read_bytes() == (
        FIXTURE / "tokenizer.json"
    ).read_bytes()

    out_dir = tmp_path / "exported"
    code, out, err = run_cli(capsys, "export-hf", "--workdir", str(run), "--out", str(out_dir))
    assert code == 0, err
    assert {p.name for p in out_dir.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    }
    # The frozen encoder comes back as it went in: the same ids and hidden states.
    exported = load_hf_encoder(out_dir)
    batch = exported.tokenize(SENTENCES, max_length=24)
    np.testing.assert_array_equal(batch["input_ids"], REFERENCE["input_ids"])
    np.testing.assert_allclose(exported(batch), REFERENCE["hidden"], atol=TOLERANCE, rtol=0)
    config = json.loads((out_dir / "config.json").read_text())
    assert (
        config["architectures"] == ["BertForSequenceClassification"]
        and len(config["id2label"]) == 2
    )

    # Never overwritten: exit 2, one line, nothing touched.
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "export-hf", "--workdir", str(run), "--out", str(out_dir))
    assert_error(code, err, str(out_dir), "not empty", "never overwrites")
    assert snapshot(tmp_path) == before

    transformers = pytest.importorskip("transformers")  # The reference library, where installed.
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        ids = {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
        hidden = transformers.BertModel.from_pretrained(out_dir).eval()(**ids).last_hidden_state
        logits = (
            transformers.BertForSequenceClassification.from_pretrained(out_dir).eval()(**ids).logits
        )
    np.testing.assert_allclose(hidden.numpy(), REFERENCE["hidden"], atol=TOLERANCE, rtol=0)
    plan, _, state = restore_checkpoint(run, "best")
    ours = plan.task.model.apply(
        {"params": state.params},
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        train=False,
    )
    np.testing.assert_allclose(logits.numpy(), np.asarray(ours), atol=TOLERANCE, rtol=0)


def test_model_that_does_not_fit_the_checkpoint_exits_2(capsys, tmp_path, tiny_text):
    before = snapshot(tmp_path)
    argv = ["train", "--config", tiny_text, "--workdir", str(tmp_path / "new")]
    argv += [f"--config.init_from=hf:{FIXTURE}", "--config.model.hidden_size=16"]
    argv += ["--config.model.num_heads=4"]
    code, _, err = run_cli(capsys, *argv)
    words = [
        "config.init_from='hf:",
        "--config.model.hidden_size=32",
        "--config.model.num_heads=2",
    ]
    assert_error(code, err, *words)
    assert snapshot(tmp_path) == before


def test_byte_level_run_exports_a_byte_tokenizer(capsys, tmp_path, sequence_data_dir):
    """A run on byte ids (algorithmic/brackets) gets a tokenizer.json that gives those ids."""
    ids = byte_tokenizer().encode("(a é)").ids
    assert ids == list("(a é)".encode())
    sizes = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32, "max_length": 40}
    experiment = _experiment(tmp_path, "algorithmic/brackets", sizes)
    run, out_dir = tmp_path / "run", tmp_path / "exported"
    # A run's freshly initialised state saved as its step 0: export-hf needs no training.
    plan = loop.setup(parse_config(experiment, [f"--config.data.data_dir={sequence_data_dir}"]))
    workdir.start_new(run, plan.config)
    feed, checkpointer = steps.open_batch_feed(plan), Checkpointer(run / "checkpoints", keep=1)
    state = init_state(plan)
    checkpointer.save(0, state, feed, {"best_step": None})
    checkpointer.wait()
    checkpointer.close()
    feed.close()
    code, _, err = run_cli(capsys, "export-hf", "--workdir", str(run), "--out", str(out_dir))
    assert code == 0, err
    exported = load_hf_encoder(out_dir)
    batch = exported.tokenize(["(()", "()[]{}"], max_length=40)
    np.testing.assert_array_equal(batch["input_ids"][1], list(b"()[]{}"))
    np.testing.assert_array_equal(batch["input_ids"][0], [*b"(()", 0, 0, 0])
    encoder = BertEncoder(**plan.task.model.encoder_fields())
    variables = {"params": jax.device_get(state.params["bert"])}
    expected = jax.jit(encoder.apply, static_argnames="train")(
        variables, batch["input_ids"], attention_mask=batch["attention_mask"], train=False
    )
    np.testing.assert_allclose(exported(batch), expected, atol=TOLERANCE, rtol=0)
