"""ResNet-20 on CIFAR-10 with He et al.'s recipe (needs the prepared TFDS cifar10; no downloads).

Published: 91.25% test accuracy (8.75% error; He et al. 2016, "Deep Residual Learning for Image
Recognition", Table 6). Not reproduced here: this machine has no CIFAR-10.

python -m jaxdl.train --config experiments/cifar10_resnet20.py --workdir runs/cifar10_resnet20 \
    --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "cifar10"
    config.data.validation_fraction = 0.1  # The paper's 45k/5k split.
    config.data.batch_size = 128
    config.data.augment = ("crop", "flip")  # 4-pixel zero padding, random 32x32 crop.
    config.data.crop_padding = 4

    config.model.name = "resnet"
    config.model.depth = 20
    config.model.stem = "cifar"
    config.model.dtype = "float32"

    # SGD with momentum 0.9, lr 0.1 divided by 10 at 32k and 48k of 64k iterations, L2 1e-4.
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 1e-4
    config.optimizer.decay_all_params = True
    config.schedule.name = "step"
    config.schedule.boundaries = (0.5, 0.75)
    config.schedule.decay_factor = 0.1

    config.train.num_steps = 64_000
    config.train.eval_every = 1000
    config.train.log_every = 200
    config.train.checkpoint_every = 2000

    if variant == "quick":
        config.data.batch_size = 16
        config.data.eval_batch_size = 16
        config.model.width = 0.25
        make_quick(config)
    return config
