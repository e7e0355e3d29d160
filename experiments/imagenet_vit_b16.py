"""ViT-B/16 on ImageNet with the DeiT recipe, 300 epochs (needs the prepared TFDS imagenet2012;
no downloads).

Published: 81.8% top-1 for DeiT-B, this architecture trained on ImageNet-1k only (Touvron et al.
2021, "Training data-efficient image transformers", Table 7): AdamW, lr 5e-4 per 512 images,
weight decay 0.05, 5 warmup epochs and cosine decay, label smoothing 0.1, RandAugment (2, 9),
mixup 0.8, cutmix 1.0. DeiT also uses stochastic depth, random erasing and repeated
augmentation, which jaxdl does not have yet. Not reproduced here: this machine has no ImageNet.

python -m jaxdl.train --config experiments/imagenet_vit_b16.py --workdir runs/imagenet_vit_b16 \
    --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick

EPOCHS = 300
TRAIN_IMAGES = 1_281_167 - 10_000


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "imagenet2012"
    config.data.image_size = 224
    config.data.validation_fraction = 10_000 / 1_281_167
    config.data.batch_size = 1024
    config.data.eval_batch_size = 1024
    config.data.worker_count = 8
    config.data.augment = ("resized_crop", "flip", "randaugment", "mixup", "cutmix")
    config.data.randaugment_ops = 2
    config.data.randaugment_magnitude = 9
    config.data.mixup_alpha = 0.8
    config.data.cutmix_alpha = 1.0
    config.task.label_smoothing = 0.1

    config.model.name = "vit"
    config.model.variant = "B"
    config.model.patch_size = 16
    config.model.pool = "cls"
    config.model.dtype = "bfloat16"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 5e-4 * config.data.batch_size / 512
    config.optimizer.weight_decay = 0.05
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    steps_per_epoch = TRAIN_IMAGES // config.data.batch_size
    config.schedule.warmup_steps = 5 * steps_per_epoch
    config.schedule.end_factor = 1e-3

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
        config.model.patch_size = 8
        config.model.hidden_size = 32
        config.model.num_layers = 2
        config.model.num_heads = 2
        config.model.mlp_dim = 64
        config.model.dtype = "float32"
        make_quick(config)
    return config
