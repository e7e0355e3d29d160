"""Class-conditional DDPM on MNIST (28x28, U-Net at 28, 14 and 7 pixels), for machines with the
TFDS data prepared.

python -m jaxdl.train --config experiments/mnist_diffusion.py --workdir runs/mnist_diffusion
Needs `mnist` in TFDS's data_dir (data.data_dir); this machine never downloads it.
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "mnist"
    config.data.batch_size = 128
    config.task.name = "diffusion"
    config.task.noise_schedule = "cosine"
    config.task.timesteps = 1000
    config.task.target = "epsilon"
    config.task.ema_decay = 0.9995
    config.task.sampler = "ddim"
    config.task.sample_steps = 100
    config.task.ddim_eta = 0.0
    config.task.label_dropout = 0.1
    config.task.guidance = 2.0

    config.model.name = "unet"
    config.model.base_channels = 64
    config.model.channel_mults = (1, 2, 2)
    config.model.num_res_blocks = 2
    config.model.attention_resolutions = (7,)
    config.model.num_heads = 4
    config.model.dropout_rate = 0.1
    config.model.conditional = True

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 2e-4
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 1000

    config.sample_quality = sample_quality.config_fields(
        "digits_cnn", "--config.data.name=mnist", "--config.train.num_steps=3000"
    )
    config.sample_quality.num_samples = 2000  # Each evaluation samples this many.

    config.train.num_steps = 50_000
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000
    config.train.monitor = "fd"
    config.train.monitor_mode = "min"
    if variant == "quick":
        config.model.base_channels = 8
        config.model.channel_mults = (1,)
        config.model.attention_resolutions = ()
        config.task.sample_steps = 4
        config.sample_quality.classifier_config = "digits_cnn:quick"
        config.sample_quality.num_samples = 64
        make_quick(config)
    return config
