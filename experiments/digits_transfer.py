"""Transfer learning on digits: pretrain a CNN on 0-4, fine-tune on 5-9 with 10 labels per class.

python -m jaxdl.train --config experiments/digits_transfer.py:pretrain --workdir runs/pretrain04
python -m jaxdl.train --config experiments/digits_transfer.py:finetune --workdir runs/finetune59 \
    --config.init_from=runs/pretrain04
python -m jaxdl.train --config experiments/digits_transfer.py:scratch --workdir runs/scratch59

Variants: pretrain (the default), finetune (every layer trains; init_from is given on the command
line), linear_probe (the same, with everything but the classifier frozen), scratch (finetune's
config without init_from: the same labels and steps from a random start). Each has a smoke-run
form with '_quick' appended (and ':quick' is pretrain_quick).
"""

from jaxdl.config import base_config, check_variant, make_quick

STAGES = ("pretrain", "finetune", "linear_probe", "scratch")
VARIANTS = (*STAGES, *(f"{stage}_quick" for stage in STAGES), "quick")


def get_config(variant: str = ""):
    check_variant(variant, VARIANTS)
    stage = variant.removesuffix("_quick").removesuffix("quick") or "pretrain"
    config = base_config()
    config.data.name = "digits"
    config.data.augment = ("shift",)
    config.task.label_smoothing = 0.1

    config.model.name = "cnn"
    config.model.conv_features = (32, 64, 128)
    config.model.convs_per_stage = 2
    config.model.kernel_size = 3
    config.model.pooling = "max"
    config.model.global_pool = "avg"
    config.model.dense_sizes = ()
    config.model.activation = "relu"
    config.model.batch_norm = True
    config.model.dropout_rate = 0.1

    config.optimizer.name = "adamw"
    config.optimizer.weight_decay = 0.05
    config.schedule.name = "warmup_cosine"
    # The best checkpoint by validation loss (accuracy on a few hundred images ties early).
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if stage == "pretrain":
        # Digits 0-4: about 630 train images.
        config.data.classes = (0, 1, 2, 3, 4)
        config.data.batch_size = 64
        config.optimizer.learning_rate = 3e-3
        config.schedule.warmup_steps = 100
        config.train.num_steps = 1000
        config.train.eval_every = 100
        config.train.checkpoint_every = 500
    else:
        # Digits 5-9 with the first 10 train images of each: 50 labels.
        config.data.classes = (5, 6, 7, 8, 9)
        config.data.train_examples_per_class = 10
        config.data.batch_size = 32
        config.optimizer.learning_rate = 3e-3
        config.schedule.warmup_steps = 20
        config.train.num_steps = 300
        config.train.eval_every = 25
        config.train.checkpoint_every = 300
        if stage == "linear_probe":
            config.optimizer.frozen = ("backbone",)
            config.optimizer.learning_rate = 1e-2

    if variant.endswith("quick"):
        config.model.conv_features = (8, 16)
        config.model.convs_per_stage = 1
        make_quick(config)
    return config
