"""ResNet-20 (CIFAR family) on scikit-learn's 8x8 digits.

python -m jaxdl.train --config experiments/digits_resnet.py --workdir runs/digits_resnet
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "digits"
    config.data.batch_size = 64
    config.data.augment = ("shift",)
    config.task.label_smoothing = 0.1

    config.model.name = "resnet"
    config.model.depth = 20  # 3 stages of 3 basic blocks, 16-32-64 channels: 8x8 -> 4x4 -> 2x2.
    config.model.stem = "cifar"
    config.model.width = 1.0
    config.model.preact = False
    config.model.zero_init_last_bn = True
    config.model.dtype = "float32"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 0.05
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 100

    config.train.num_steps = 1500
    config.train.eval_every = 100
    config.train.checkpoint_every = 500
    # As for digits_cnn: validation accuracy on 180 images ties early; loss picks better.
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.width = 0.5
        make_quick(config)
    return config
