"""The base config every experiment extends; the checks on a resolved config are in config_checks.py.

Experiments in `experiments/` call `base_config()` and override fields; the CLI applies
`--config.x=y` overrides on top. `validate` runs before anything touches the workdir.
"""

import importlib.util
from pathlib import Path
from typing import Any

import ml_collections

from jaxdl.config_checks import (  # noqa: F401  (re-exported: the config's vocabulary)
    MESH_AXES,
    MESH_MODES,
    MESH_STRATEGIES,
    OPTIMIZERS,
    SCHEDULES,
    validate,
)
from jaxdl.errors import UserInputError


def base_config() -> ml_collections.ConfigDict:
    """Fields shared by all experiments. Family-specific model fields are added by each experiment."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Start from another run's parameters: 'WORKDIR' (its best checkpoint) or 'WORKDIR:STEP'.
    config.init_from = ""

    config.task = ml_collections.ConfigDict({"name": "classification", "label_smoothing": 0.0})
    # Adversarial training (tasks/adversarial.py): fgsm, pgd or trades ('' off). eps and the
    # step size are in [0, 1]-pixel units (scaled to the dataset's input range); 0 step size
    # is 2.5 * eps / steps; trades_beta weighs TRADES' KL(clean || adversarial) term.
    config.task.adversarial = ""
    config.task.adversarial_eps = 0.1
    config.task.adversarial_norm = "linf"
    config.task.adversarial_steps = 10
    config.task.adversarial_step_size = 0.0
    config.task.trades_beta = 6.0
    # Imbalanced data (tasks/class_balance.py): per-class loss weights from the train split's
    # counts, 'none', 'inverse' (1 / n_c) or 'effective' ((1 - beta) / (1 - beta^n_c), Cui et
    # al. 2019), normalised to mean 1 over the classes; focal loss (Lin et al. 2017), 0 = off.
    config.task.class_weighting = "none"
    config.task.class_weighting_beta = 0.999
    config.task.focal_gamma = 0.0
    # Compression while training a classifier (jaxdl/compression/, README "Compression").
    # Quantization-aware training: scheme int8, int4 or fp8 ('' off); mode dynamic or weight.
    config.quant = ml_collections.ConfigDict({"scheme": "", "mode": "dynamic"})
    # Knowledge distillation from a finished classifier run ('WORKDIR' or 'WORKDIR:STEP'; ''
    # off): loss = (1 - alpha) * labels' cross-entropy + alpha * T^2 * KL(teacher_T || student_T).
    config.distill = ml_collections.ConfigDict({"teacher": "", "temperature": 4.0, "alpha": 0.9})
    # Magnitude pruning (jaxdl/pruning.py) to `sparsity` of the kernels (0 off), ramped up
    # between the fractions `begin` and `end` of train.num_steps, masks updated `every` steps;
    # scope 'global' (all kernels ranked together) or 'layer'; structure 'weights' or 'units'
    # (whole neurons and channels of each hidden layer, removed afterwards by `jaxdl shrink`).
    config.prune = ml_collections.ConfigDict(
        {
            "sparsity": 0.0,
            "scope": "global",
            "structure": "weights",
            "begin": 0.1,
            "end": 0.6,
            "every": 20,
        }
    )

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"
    config.data.data_dir = ""  # '' means TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).
    config.data.validation_fraction = 0.1
    config.data.input_kind = "auto"
    config.data.batch_size = 128  # Global batch, split over all devices.
    config.data.eval_batch_size = 256
    # 'auto': datasets that fit in memory are decoded once into arrays; larger ones stream.
    config.data.pipeline = "auto"
    config.data.worker_count = 0  # Grain worker processes, for streamed datasets only.
    config.data.augment = ()  # Train-time augmentations, run on the device: 'shift', 'flip'.
    config.data.max_shift = 1  # Pixels, for 'shift'.
    # More augmentations (data/augment.py): 'crop', 'resized_crop', 'color_jitter', 'mixup',
    # 'cutmix', 'randaugment'. Their settings:
    config.data.crop_padding = 4  # 'crop': zero padding each side before the random crop.
    config.data.resized_crop_scale = (0.08, 1.0)  # 'resized_crop': area fraction range.
    config.data.resized_crop_ratio = (0.75, 1.3333333333333333)  # ... and aspect-ratio range.
    config.data.color_jitter = 0.4  # Brightness, contrast and saturation strength (RGB).
    config.data.mixup_alpha = 0.8  # Beta(alpha, alpha) mixing weight for 'mixup'.
    config.data.cutmix_alpha = 1.0  # Beta(alpha, alpha) kept-area fraction for 'cutmix'.
    config.data.randaugment_ops = 2  # Operations applied per image.
    config.data.randaugment_magnitude = 9  # 0..30, as in the RandAugment paper.
    # Subsets (for transfer learning): only these labels, renumbered 0..k-1 in this order
    # (() keeps all), and at most this many train examples per class (0 keeps all).
    config.data.classes = ()
    config.data.train_examples_per_class = 0
    config.data.image_size = 0  # Side images are resized to by datasets of mixed sizes (0: native).
    # Imbalanced data (data/imbalance.py): 'uniform' (every example once per epoch) or
    # 'balanced' (every class equally likely per draw); a long-tailed train split where class k
    # keeps n_max * ratio^(-k / (C - 1)) examples (0 or 1: off); and which examples the subsets
    # keep: -1 the first ones of each class (as before 0.6.0), a seed >= 0 a seeded choice.
    config.data.sampler = "uniform"
    config.data.imbalance_ratio = 0.0
    config.data.subset_seed = -1

    # Each experiment adds its family's fields; dtype is the compute dtype (params stay float32).
    config.model = ml_collections.ConfigDict({"name": "mlp", "dtype": "float32"})

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.momentum = 0.9  # sgd-family only.
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.0
    config.optimizer.decay_all_params = False  # False: biases and norm scales are not decayed.
    config.optimizer.grad_clip_norm = 0.0  # 0 disables clipping.
    # Parameter groups (jaxdl/optim.py): 'head' (the layers that output the classes),
    # 'backbone' (all others), or a regular expression over paths such as 'encoder/block_0/.*'.
    config.optimizer.frozen = ()  # Groups left unchanged by training, e.g. ('backbone',).
    config.optimizer.lr_multipliers = ()  # 'GROUP=FACTOR' entries, e.g. ('backbone=0.1',).

    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 0
    config.schedule.end_factor = 0.0  # Final LR as a fraction of the peak (cosine).
    config.schedule.boundaries = (0.5, 0.75)  # 'step': fractions of train.num_steps.
    config.schedule.decay_factor = 0.1  # 'step': LR multiplier at each boundary.

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 1000
    config.train.log_every = 50
    config.train.eval_every = 100
    config.train.checkpoint_every = 200
    config.train.keep_checkpoints = (
        2  # Latest N kept for resuming; the best one is always kept too.
    )
    config.train.monitor = (
        "accuracy"  # Validation metric for early stopping and the best checkpoint.
    )
    config.train.monitor_mode = "max"
    # Evaluations before this step are not candidates for the best checkpoint (a pruned run's
    # also wait for its target sparsity, jaxdl/pruning.py).
    config.train.monitor_from = 0
    config.train.patience = (
        0  # Evaluations without improvement before stopping; 0 never stops early.
    )
    config.train.progress_bar = True
    # Also save whenever this many minutes passed since the last save (0 turns it off).
    config.train.checkpoint_every_minutes = 0.0
    # Non-finite loss or updates (engine/nonfinite.py): 'rollback', 'skip', 'stop' or 'off'.
    config.train.nonfinite = "rollback"
    config.train.nonfinite_patience = 10  # Dropped updates in a row before a rollback or stop.
    config.train.nonfinite_lr_factor = 0.5  # Learning-rate multiplier at each rollback.
    config.train.nonfinite_max_rollbacks = 3  # Then stop.

    # JAX's NaN checker: stops at the first operation that makes a NaN (slow; for debugging).
    config.debug_nans = False

    config.mesh = ml_collections.ConfigDict()
    # Axis sizes of the device mesh (engine/sharding.py); one may be -1, "the remaining devices".
    # The batch is split over data x fsdp, parameters over fsdp and tensor.
    config.mesh.data = -1
    config.mesh.fsdp = 1
    config.mesh.tensor = 1
    # 'jit': XLA partitions the step; 'shard_map': the step is written per device.
    config.mesh.mode = "jit"
    config.mesh.strategy = "data_parallel"  # Before 0.3: 'fsdp' meant mesh.data=1 mesh.fsdp=-1.
    config.mesh.num_devices = 0  # 0 uses every device (of every process).
    # Micro-batches per step: gradients are summed over them, then one update is applied.
    config.train.grad_accum_steps = 1
    # float16 compute (model.dtype): the loss is scaled up by this much at first; the scale
    # halves after an overflow (that step is skipped) and doubles after `growth_interval`
    # finite steps.
    config.train.loss_scale_init = 2.0**15
    config.train.loss_scale_growth_interval = 2000
    return config


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config, with sequences as lists (the form saved to config.json)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, tuple | list):
            flat[name] = list(value)
        else:
            flat[name] = value
    return flat


# Fields that say where a run computes, not what: a checkpoint restores onto another mesh.
LAYOUT_FIELDS = frozenset(
    {"mesh.data", "mesh.fsdp", "mesh.tensor", "mesh.mode", "mesh.strategy", "mesh.num_devices"}
)


def make_quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A smoke-run variant of an experiment: a few dozen steps, every code path exercised."""
    config.schedule.warmup_steps = min(config.schedule.warmup_steps, 5)
    config.train.num_steps = 40
    config.train.log_every = 10
    config.train.eval_every = 20
    config.train.checkpoint_every = 20
    return config


def experiment_config(name: str, variant: str = "") -> ml_collections.ConfigDict:
    """The config of experiments/NAME.py, for an experiment built on another one."""
    path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"jaxdl_experiment_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def check_variant(variant: str, known: tuple[str, ...] = ("quick",)) -> None:
    if variant and variant not in known:
        raise UserInputError(
            f"unknown experiment variant {variant!r}; choose one of {', '.join(known)} "
            "(written as --config FILE.py:VARIANT)."
        )


def scale_learning_rates(
    config: ml_collections.ConfigDict, scale: float
) -> ml_collections.ConfigDict:
    """A copy with every field named `learning_rate`, at any depth, multiplied by `scale`."""
    scaled = ml_collections.ConfigDict(config.to_dict())

    def visit(node: ml_collections.ConfigDict) -> None:
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                visit(value)
            elif key == "learning_rate":
                node[key] = value * scale

    visit(scaled)
    scaled.lock()
    return scaled


def mesh_axis_sizes(config: ml_collections.ConfigDict) -> dict[str, int]:
    """The configured axis sizes (-1 unresolved), with the pre-0.3 `mesh.strategy` translated."""
    sizes = {axis: int(config.mesh[axis]) for axis in MESH_AXES}
    if config.mesh.strategy == "fsdp":
        sizes.update(data=1, fsdp=-1)
    return sizes


def with_default_layout(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy laid out over every device here, as data parallel: for evaluating a saved run,
    whose checkpoint restores onto any mesh, on a machine unlike the one that trained it."""
    defaults = base_config().mesh
    copy = ml_collections.ConfigDict(config.to_dict())
    for field in LAYOUT_FIELDS:
        copy.mesh[field.split(".")[1]] = defaults[field.split(".")[1]]
    return copy


def graph_config(
    dataset: str, task: str, readout: str, *, layer: str = "gcn", batch_size: int = 1
) -> ml_collections.ConfigDict:
    """The shared part of the graph experiments: a GNN over packs of `batch_size` graphs
    (1: the whole graph each step, for one-graph datasets)."""
    config = base_config()
    config.task = ml_collections.ConfigDict({"name": task})
    config.data.name = dataset
    config.data.batch_size = batch_size
    config.data.eval_batch_size = batch_size if batch_size == 1 else 4 * batch_size
    # Pack budgets in nodes and edges (data/graphs.py); 0 chooses them from the data.
    config.data.max_nodes = 0
    config.data.max_edges = 0
    config.model = ml_collections.ConfigDict(
        {
            "name": "gnn",
            "dtype": "float32",
            "layer": layer,  # gcn, sage, gat, gin, mpnn, or mlp (structure-blind baseline).
            "hidden": 64,
            "num_layers": 2,
            "heads": 4,  # gat
            "aggregator": "mean",  # sage: mean or max
            "learn_eps": True,  # gin
            "dropout": 0.0,
            "input_dropout": 0.0,
            "residual": False,
            "norm": "none",
            "jumping_knowledge": False,
            "readout": readout,
            "pooling": "sum",  # graph readouts: sum, mean, max or attention
        }
    )
    config.optimizer.learning_rate = 1e-2
    config.schedule.name = "constant"
    return config


def structure_recipe(
    config: ml_collections.ConfigDict, *, num_layers: int, norm: str, num_steps: int
) -> ml_collections.ConfigDict:
    """The synthetic graph sets' recipe: GIN-style readouts of every layer, summed per graph."""
    config.model.hidden = 64
    config.model.num_layers = num_layers
    config.model.jumping_knowledge = True
    config.model.norm = norm
    config.model.pooling = "sum"
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 100
    config.train.num_steps = num_steps
    config.train.log_every = 100
    config.train.eval_every = 250
    config.train.checkpoint_every = 1000
    return config


def full_graph_schedule(config: ml_collections.ConfigDict, num_steps: int) -> None:
    """One-graph datasets: every step is the whole graph, so evaluate often."""
    config.train.num_steps = num_steps
    config.train.log_every = 20
    config.train.eval_every = 20
    config.train.checkpoint_every = 100
