"""DDPM on CelebA faces at 64x64 (U-Net levels at 64, 32, 16, 8 and 4 pixels, attention at 16),
for accelerators with the TFDS data prepared.

python -m jaxdl.train --config experiments/celeb_a_diffusion.py --workdir runs/celeb_a_diffusion
Needs `celeb_a` in TFDS's data_dir (data.data_dir); this machine never downloads it.
`--config.model.conditional=True` conditions on data.attribute (default 'Male'), with guidance.
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality

CLASSIFIER = ("cifar10_resnet20", "--config.data.name=celeb_a", "--config.data.image_size=64")


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.data.attribute = "Male"
    config.data.batch_size = 64
    config.data.augment = ("flip",)
    config.task.name = "diffusion"
    config.task.noise_schedule = "cosine"
    config.task.timesteps = 1000
    config.task.target = "v"
    config.task.ema_decay = 0.9999
    config.task.sampler = "ddim"
    config.task.sample_steps = 100
    config.task.ddim_eta = 0.0
    config.task.label_dropout = 0.1
    config.task.guidance = 1.5

    config.model.name = "unet"
    config.model.base_channels = 128
    config.model.channel_mults = (1, 1, 2, 2, 4)
    config.model.num_res_blocks = 2
    config.model.attention_resolutions = (16,)
    config.model.num_heads = 4
    config.model.dropout_rate = 0.1
    config.model.conditional = False
    config.model.dtype = "bfloat16"

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 2e-4
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 5000
    config.schedule.end_factor = 1.0

    config.sample_quality = sample_quality.config_fields(*CLASSIFIER)
    config.sample_quality.num_samples = 5000

    config.train.num_steps = 500_000
    config.train.eval_every = 20_000
    config.train.checkpoint_every = 10_000
    config.train.monitor = "fd"
    config.train.monitor_mode = "min"
    if variant == "quick":
        config.data.image_size = 16
        config.model.base_channels = 8
        config.model.channel_mults = (1,)
        config.model.attention_resolutions = ()
        config.model.dtype = "float32"
        config.task.sample_steps = 4
        config.sample_quality.classifier_config = "cifar10_resnet20:quick"
        config.sample_quality.classifier_overrides = (
            "--config.data.name=celeb_a",
            "--config.data.image_size=16",
        )
        config.sample_quality.num_samples = 64
        make_quick(config)
    return config
