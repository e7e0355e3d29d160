"""The on-device augmentations beyond shift and flip: crop, resized_crop, color_jitter,
randaugment, mixup and cutmix. Their draws, their checks, the soft labels, and a resumed run
with all of them on."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import linen as nn

from jaxdl import config as config_lib
from jaxdl.data.augment import (
    AUGMENTATIONS,
    RandomFlip,
    RandomShift,
    augment_batch,
    build_augmentations,
)
from jaxdl.data.randaugment import OPS, RandAugment
from jaxdl.engine import loop, sharding, workdir
from jaxdl.engine.metrics_log import read_records
from jaxdl.engine.preemption import Preempted, Preemption
from jaxdl.errors import UserInputError
from jaxdl.tasks.classification import ClassificationTask
from tests.run_helpers import REPO

NEW = ("crop", "resized_crop", "color_jitter", "randaugment", "mixup", "cutmix")
MIXES = ("mixup", "cutmix")
# Every augmentation that applies to the 8x8 grayscale digits (color_jitter needs RGB).
DIGITS_AUGMENT = ("shift", "flip", "crop", "resized_crop", "randaugment", "mixup", "cutmix")
CLASSES = 10


def _data_config(names: tuple[str, ...], **fields) -> ml_collections.ConfigDict:
    """The base `data` config with these fields, built without type checks: values of the
    wrong type (which a hand-written config could hold) reach the checks under test."""
    base = config_lib.base_config().data.to_dict()
    return ml_collections.ConfigDict({**base, "augment": names, **fields})


@functools.cache
def _augment(names: tuple[str, ...], shape: tuple[int, ...] = (8, 8, 3), **fields):
    """The jitted `(batch, key) -> batch` for these augmentations: compiled once per test run."""
    augmentations = build_augmentations(_data_config(names, **fields), shape, CLASSES)
    return jax.jit(functools.partial(augment_batch, augmentations))


def _batch(size: int = 8, shape: tuple[int, ...] = (8, 8, 3), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (size, *shape)).astype(np.float32)
    return {"input": jnp.asarray(images), "label": jnp.asarray(np.arange(size) % CLASSES)}


def test_the_registry_lists_the_old_names_first():
    # Error messages and `jaxdl list` print this order; shift and flip keep their place.
    assert ("shift", "flip", *NEW) == AUGMENTATIONS


@pytest.mark.parametrize("name", NEW)
def test_shape_dtype_range_and_labels_are_kept(name):
    batch = _batch()
    out = _augment((name,))(batch, jax.random.PRNGKey(0))
    chex.assert_shape(out["input"], batch["input"].shape)
    chex.assert_type(out["input"], jnp.float32)
    assert float(out["input"].min()) >= 0.0 and float(out["input"].max()) <= 1.0
    np.testing.assert_array_equal(out["label"], batch["label"])
    assert not np.array_equal(out["input"], batch["input"])
    if name in MIXES:
        chex.assert_shape(out["target"], (8, CLASSES))
        chex.assert_type(out["target"], jnp.float32)
        np.testing.assert_allclose(out["target"].sum(axis=1), 1.0, rtol=1e-6)
    else:
        assert set(out) == {"input", "label"}


@pytest.mark.parametrize("name", NEW)
def test_the_same_key_draws_the_same_and_another_key_draws_otherwise(name):
    batch, augment = _batch(), _augment((name,))
    once = augment(batch, jax.random.PRNGKey(1))
    chex.assert_trees_all_equal(once, augment(batch, jax.random.PRNGKey(1)))
    assert not np.array_equal(once["input"], augment(batch, jax.random.PRNGKey(2))["input"])


@pytest.mark.parametrize("name", [name for name in NEW if name not in MIXES])
def test_an_example_draws_the_same_whatever_the_rest_of_the_batch(name):
    batch, other = _batch(seed=0), _batch(seed=1)
    other["input"] = other["input"].at[3].set(batch["input"][3])
    augment = _augment((name,))
    key = jax.random.PRNGKey(4)
    out, out_other = augment(batch, key)["input"], augment(other, key)["input"]
    np.testing.assert_array_equal(out[3], out_other[3])
    assert not np.array_equal(out[2], out_other[2])
    # Per-example draws: equal images in one batch come out differently.
    same = {**batch, "input": jnp.broadcast_to(batch["input"][:1], batch["input"].shape)}
    out_same = np.asarray(augment(same, key)["input"])
    assert len({row.tobytes() for row in out_same}) > 1


def test_shift_and_flip_draw_as_they_always_did():
    # Reproducibility fingerprints of existing runs rest on these keys.
    def both(batch: dict, key: jax.Array) -> tuple[dict, jax.Array]:
        expected = RandomShift(1)(batch["input"], jax.random.fold_in(key, 0))
        expected = RandomFlip()(expected, jax.random.fold_in(key, 1))
        return augment_batch((RandomShift(1), RandomFlip()), batch, key), expected

    augmented, expected = jax.jit(both)(_batch(shape=(6, 5, 2)), jax.random.PRNGKey(7))
    np.testing.assert_array_equal(augmented["input"], expected)
    assert set(augmented) == {"input", "label"}


def test_crop_is_a_window_of_the_zero_padded_image():
    batch = _batch()
    out = np.asarray(_augment(("crop",))(batch, jax.random.PRNGKey(3))["input"])
    padded = np.pad(np.asarray(batch["input"]), ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets = set()
    for image, window in zip(padded, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if np.array_equal(window, image[dy : dy + 8, dx : dx + 8])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 4


def test_resized_crop_enlarges_a_window_bilinearly():
    # Channel 0 rises left to right, channel 1 top to bottom: bilinear resizing keeps a ramp a
    # ramp, so the output gives away where the (4x4, a quarter of the area) crop was.
    ramp = np.arange(8, dtype=np.float32) / 7
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.float32(0.5)), -1)
    batch = {"input": jnp.broadcast_to(image, (8, 8, 8, 3)), "label": jnp.zeros(8, jnp.int32)}
    quarter = _augment(
        ("resized_crop",), resized_crop_scale=(0.25, 0.25), resized_crop_ratio=(1, 1)
    )
    out = np.asarray(quarter(batch, jax.random.PRNGKey(0))["input"])
    # Output pixel j samples the crop at j / 2 - 0.25, clamped to the image.
    along = np.broadcast_to(np.arange(8) / 2 - 0.25, (8, 8))  # Along rows: x.
    corners = set()
    for crop in out:
        left, top = round(crop[0, 1, 0] * 7 - 0.25), round(crop[1, 0, 1] * 7 - 0.25)
        np.testing.assert_allclose(crop[..., 0], np.clip(left + along, 0, 7) / 7, atol=1e-6)
        np.testing.assert_allclose(crop[..., 1], np.clip(top + along.T, 0, 7) / 7, atol=1e-6)
        np.testing.assert_allclose(crop[..., 2], 0.5)
        corners.add((top, left))
    assert len(corners) > 2


def test_color_jitter_keeps_gray_images_gray():
    batch = _batch()
    gray = {**batch, "input": jnp.repeat(batch["input"][..., :1], 3, axis=-1)}
    out = np.asarray(_augment(("color_jitter",))(gray, jax.random.PRNGKey(0))["input"])
    np.testing.assert_allclose(out, np.repeat(out[..., :1], 3, axis=-1), atol=1e-6)
    assert not np.allclose(out, gray["input"])


@pytest.mark.parametrize("channels", [1, 3])
def test_every_randaugment_op_keeps_shape_and_range(channels):
    images = _batch(shape=(8, 8, channels))["input"]
    strongest = RandAugment(num_ops=1, magnitude=30)

    def all_ops(image: jax.Array, draw_sign: jax.Array) -> jax.Array:
        # Draw i picks op i: the op index is floor(draw * len(OPS)).
        draws = (jnp.arange(len(OPS)) + 0.5) / len(OPS)
        return jax.vmap(lambda d: strongest._apply(image, jnp.stack([d, draw_sign])))(draws)

    out = jax.jit(jax.vmap(all_ops, in_axes=(0, None)))(images, 0.9)
    chex.assert_shape(out, (8, len(OPS), 8, 8, channels))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    names = list(OPS)
    np.testing.assert_array_equal(out[:, names.index("identity")], images)
    changed = {name for i, name in enumerate(names) if not np.array_equal(out[:, i], images)}
    grayscale_same = {"identity", "color"} if channels == 1 else {"identity"}
    assert changed == set(names) - grayscale_same


def _constant_images(size: int = 8) -> tuple[dict, np.ndarray]:
    """Image i is filled with value i + 1 over size + 1; label i among `size` classes."""
    values = (np.arange(size) + 1) / (size + 1)
    images = np.broadcast_to(values[:, None, None, None], (size, 8, 8, 3)).astype(np.float32)
    return {"input": jnp.asarray(images), "label": jnp.arange(size) % CLASSES}, values


def test_mixup_blends_each_image_with_its_partner_and_labels_say_how_much():
    batch, values = _constant_images()
    out = _augment(("mixup",))(batch, jax.random.PRNGKey(5))
    images, target = np.asarray(out["input"]), np.asarray(out["target"])
    np.testing.assert_allclose(target.sum(axis=1), 1.0, rtol=1e-6)
    for i in range(8):
        own = target[i, i]
        partner = int(np.argmax(np.where(np.arange(CLASSES) == i, -1, target[i])))
        partner_value = values[partner] if target[i, partner] > 0 else values[i]
        np.testing.assert_allclose(
            images[i], own * values[i] + (1 - own) * partner_value, atol=1e-6
        )


def test_cutmix_labels_are_the_pasted_fractions():
    batch, values = _constant_images()
    out = _augment(("cutmix",))(batch, jax.random.PRNGKey(6))
    images, target = np.asarray(out["input"]), np.asarray(out["target"])
    np.testing.assert_allclose(target.sum(axis=1), 1.0, rtol=1e-6)
    pasted_some = 0
    for i in range(8):
        for j in range(8):
            fraction = np.isclose(images[i, :, :, 0], values[j]).mean()
            np.testing.assert_allclose(target[i, j], fraction, atol=1e-6)
        pasted_some += target[i, i] < 1
    assert pasted_some > 0


def test_with_both_listed_each_step_mixes_or_cuts():
    batch, values = _constant_images()
    augment = _augment(MIXES)
    kinds = set()
    for seed in range(12):
        images = np.asarray(augment(batch, jax.random.PRNGKey(seed))["input"])
        levels = [len(np.unique(image)) for image in images]
        # Cutmix keeps the two values it pastes; mixup makes one new one.
        blended = any(not np.isclose(images[i][..., None], values).any() for i in range(8))
        kinds.add("mixup" if blended else "cutmix" if max(levels) == 2 else "neither")
    assert kinds == {"mixup", "cutmix"}


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return nn.Dense(3, kernel_init=nn.initializers.ones)(x.reshape(x.shape[0], -1))


def test_label_smoothing_applies_on_top_of_soft_targets():
    task = ClassificationTask(_Linear(), optax.sgd(0.1), optax.constant_schedule(0.1), 3, 0.3)
    batch = {
        "input": jnp.asarray([[0.0, 1.0], [2.0, -1.0]]),
        "label": jnp.asarray([2, 0]),
        "target": jnp.asarray([[0.25, 0.0, 0.75], [1.0, 0.0, 0.0]]),
    }
    state = task.init_state(jax.random.PRNGKey(0), batch)
    _, metrics, _ = task.compute_grads(state, batch)
    logits = batch["input"].sum(axis=1, keepdims=True) * jnp.ones((1, 3))  # ones kernel, 0 bias
    smoothed = batch["target"] * 0.7 + 0.3 / 3
    expected = -(smoothed * jax.nn.log_softmax(logits)).sum(axis=1).mean()
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
    # Accuracy is against the integer labels: all logits tie, argmax is class 0.
    np.testing.assert_allclose(metrics["accuracy"], 0.5)


# Checks of the config.


def test_color_jitter_on_grayscale_says_to_remove_it():
    with pytest.raises(UserInputError, match=r"config\.data\.augment: 'color_jitter'.*remove it"):
        build_augmentations(_data_config(("color_jitter",)), (8, 8, 1), CLASSES)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("crop", "crop_padding", 0),
        ("crop", "crop_padding", 8),  # The image side.
        ("crop", "crop_padding", 2.5),
        ("crop", "crop_padding", "4"),
        ("resized_crop", "resized_crop_scale", (0.0, 1.0)),
        ("resized_crop", "resized_crop_scale", (0.5, 0.2)),
        ("resized_crop", "resized_crop_scale", (0.5, 1.5)),
        ("resized_crop", "resized_crop_scale", (0.5,)),
        ("resized_crop", "resized_crop_ratio", (0.0, 1.0)),
        ("resized_crop", "resized_crop_ratio", (2.0, 1.0)),
        ("color_jitter", "color_jitter", -0.1),
        ("color_jitter", "color_jitter", 1.0),
        ("mixup", "mixup_alpha", 0.0),
        ("mixup", "mixup_alpha", float("nan")),
        ("cutmix", "cutmix_alpha", -1.0),
        ("randaugment", "randaugment_ops", 0),
        ("randaugment", "randaugment_ops", 1.5),
        ("randaugment", "randaugment_magnitude", -1),
        ("randaugment", "randaugment_magnitude", 31),
        ("randaugment", "randaugment_magnitude", True),
    ],
)
def test_a_bad_field_is_named_with_its_fix(name, field, value):
    config = _data_config((name,), **{field: value})
    with pytest.raises(UserInputError) as raised:
        build_augmentations(config, (8, 8, 3), CLASSES)
    message = str(raised.value)
    assert message.startswith(f"config.data.{field}={value!r}: must be ")
    assert "\n" not in message


def test_an_unknown_name_gets_suggestions():
    with pytest.raises(UserInputError, match=r"'crops'\. Did you mean: crop.*Choose from shift, f"):
        build_augmentations(_data_config(("crops",)), (8, 8, 3), CLASSES)


# End to end, on the digits (8x8x1).


class _StopAt(Preemption):
    """A preemption at `step` (as a SIGTERM would bring) without sending a signal."""

    def __init__(self, step: int):
        super().__init__()
        self.stop_step = step

    def reached(self, step: int) -> bool:
        if step == self.stop_step:
            self.signal_name = "SIGTERM"
        return super().reached(step)


def _digits_config(**mesh_fields) -> ml_collections.ConfigDict:
    module: dict = {}
    exec((REPO / "experiments" / "digits_cnn.py").read_text(), module)
    config = module["get_config"]("quick")
    config.data.augment = DIGITS_AUGMENT
    config.data.crop_padding = 2
    config.train.update(num_steps=20, eval_every=10, checkpoint_every=10, progress_bar=False)
    config.mesh.update({"num_devices": 2, **mesh_fields})
    return config


# `make test-all`: the fast suite's killed-run resume (test_resume.py) covers the augmentation
# keys with shift and flip on; this one adds every other augmentation and mesh layouts.
@pytest.mark.slow
def test_a_stopped_run_with_every_augmentation_resumes_to_identical_parameters(tmp_path):
    config = _digits_config()
    straight = tmp_path / "straight"
    workdir.start_new(straight, config)
    expected = loop.train(loop.setup(config), straight)

    stopped = tmp_path / "stopped"
    workdir.start_new(stopped, config)
    with pytest.raises(Preempted):
        loop.train(loop.setup(config), stopped, preemption=_StopAt(13))
    resumed = loop.train(loop.setup(config), stopped)
    assert resumed["params_fingerprint"] == expected["params_fingerprint"]
    assert read_records(stopped) == read_records(straight)


def _augment_on(devices: int, augmentations: tuple, batch: dict) -> dict:
    mesh = sharding.make_mesh(num_devices=devices)
    placed = sharding.put_batch(batch, sharding.batch_sharding(mesh))
    augment = jax.jit(functools.partial(augment_batch, augmentations))
    return jax.device_get(augment(placed, jax.random.PRNGKey(9)))


def test_two_devices_augment_the_batch_as_one_does():
    # Bit for bit: the draws are per example, and no float sum depends on the batch shape.
    augmentations = build_augmentations(_data_config(DIGITS_AUGMENT), (8, 8, 1), CLASSES)
    batch = jax.device_get(_batch(size=64, shape=(8, 8, 1)))
    one, two = (_augment_on(devices, augmentations, batch) for devices in (1, 2))
    assert set(one) == {"input", "label", "target"}
    chex.assert_trees_all_equal(one, two)


def test_two_devices_jitter_colours_as_one_does():
    augmentations = build_augmentations(_data_config(("color_jitter",)), (8, 8, 3), CLASSES)
    batch = jax.device_get(_batch(size=16))
    one, two = (_augment_on(devices, augmentations, batch) for devices in (1, 2))
    chex.assert_trees_all_equal(one, two)
