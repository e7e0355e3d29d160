"""VAE on CIFAR-10 (32x32x3, Gaussian decoder with a learned per-pixel scale), for machines
with the TFDS data prepared.

python -m jaxdl.train --config experiments/cifar10_vae.py --workdir runs/cifar10_vae
Needs `cifar10` in TFDS's data_dir (data.data_dir); this machine never downloads it.
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "cifar10"
    config.data.batch_size = 128
    config.task.name = "vae"
    config.task.beta = 1.0
    config.task.iwae_samples = 64

    config.model.name = "vae"
    config.model.latent_dim = 128
    config.model.hidden_sizes = (2048, 1024)
    config.model.activation = "gelu"
    config.model.decoder = "gaussian"
    config.model.conditional = False

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 5e-4
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 1000

    # Features of the CIFAR-10 ResNet-20 (experiments/cifar10_resnet20.py).
    config.sample_quality = sample_quality.config_fields("cifar10_resnet20")

    config.train.num_steps = 50_000
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000
    config.train.monitor = "nelbo"
    config.train.monitor_mode = "min"
    if variant == "quick":
        config.model.hidden_sizes = (32,)
        config.task.iwae_samples = 4
        config.sample_quality.classifier_config = "cifar10_resnet20:quick"
        make_quick(config)
    return config
