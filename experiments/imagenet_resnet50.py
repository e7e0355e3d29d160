"""ResNet-50 on ImageNet, 90 epochs (needs the prepared TFDS imagenet2012; no downloads).

Published: 76.3% top-1 (23.74% error at a batch of 8k; Goyal et al. 2017, "Accurate, Large
Minibatch SGD: Training ImageNet in 1 Hour", Table 2), with this recipe: SGD with momentum,
lr 0.1 per 256 images, 5 warmup epochs, /10 at epochs 30, 60 and 80, L2 1e-4, zero-initialised
last batch-norm scale in each block. Not reproduced here: this machine has no ImageNet.

python -m jaxdl.train --config experiments/imagenet_resnet50.py --workdir runs/imagenet_resnet50 \
    --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick

EPOCHS = 90
TRAIN_IMAGES = 1_281_167 - 10_000  # 10,000 train images are held out for validation.


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "imagenet2012"
    config.data.image_size = 224
    config.data.validation_fraction = 10_000 / 1_281_167
    config.data.batch_size = 1024
    config.data.eval_batch_size = 1024
    config.data.worker_count = 8  # JPEG decoding and resizing run in Grain worker processes.
    config.data.augment = ("resized_crop", "flip")
    config.data.resized_crop_scale = (0.08, 1.0)

    config.model.name = "resnet"
    config.model.depth = 50
    config.model.stem = "imagenet"
    config.model.zero_init_last_bn = True
    config.model.dtype = "bfloat16"

    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.1 * config.data.batch_size / 256
    config.optimizer.weight_decay = 1e-4
    config.schedule.name = "step"
    steps_per_epoch = TRAIN_IMAGES // config.data.batch_size
    config.schedule.warmup_steps = 5 * steps_per_epoch
    config.schedule.boundaries = (30 / EPOCHS, 60 / EPOCHS, 80 / EPOCHS)
    config.schedule.decay_factor = 0.1

    config.train.num_steps = EPOCHS * steps_per_epoch
    config.train.eval_every = 5000
    config.train.log_every = 500
    config.train.checkpoint_every_minutes = 30.0
    config.train.checkpoint_every = 5000

    if variant == "quick":
        config.data.image_size = 32
        config.data.validation_fraction = 0.2
        config.data.batch_size = 8
        config.data.eval_batch_size = 8
        config.data.worker_count = 0
        config.model.width = 0.125
        config.model.dtype = "float32"
        make_quick(config)
    return config
