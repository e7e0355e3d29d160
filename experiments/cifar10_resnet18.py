"""ResNet-18 (3x3 stem, no max-pool) on CIFAR-10 (needs the prepared TFDS cifar10; no downloads).

Reference: 93.02% test accuracy for ResNet-18 with SGD, crop and flip (the kuangliu/pytorch-cifar
results table). Not reproduced here: this machine has no CIFAR-10.

python -m jaxdl.train --config experiments/cifar10_resnet18.py --workdir runs/cifar10_resnet18 \
    --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick

EPOCHS = 200
TRAIN_IMAGES = 45_000  # After the 5,000 validation images are carved from train.


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "cifar10"
    config.data.batch_size = 128
    config.data.augment = ("crop", "flip")
    config.data.crop_padding = 4

    config.model.name = "resnet"
    config.model.depth = 18
    config.model.stem = "cifar"
    config.model.dtype = "bfloat16"

    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 5e-4
    config.optimizer.decay_all_params = True
    config.schedule.name = "warmup_cosine"

    config.train.num_steps = EPOCHS * TRAIN_IMAGES // config.data.batch_size
    config.train.eval_every = 1000
    config.train.log_every = 200
    config.train.checkpoint_every = 2000

    if variant == "quick":
        config.data.batch_size = 16
        config.data.eval_batch_size = 16
        config.model.width = 0.125
        config.model.dtype = "float32"
        make_quick(config)
    return config
