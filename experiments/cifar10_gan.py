"""DCGAN-style GAN (hinge loss, spectral norm) on CIFAR-10 (32x32x3), for machines with the TFDS data
prepared.

python -m jaxdl.train --config experiments/cifar10_gan.py --workdir runs/cifar10_gan
Needs `cifar10` in TFDS's data_dir (data.data_dir); this machine never downloads it.
`--config.model.conditional=True` trains the class-conditional GAN (projection discriminator).
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "cifar10"
    config.data.batch_size = 64
    config.task.name = "gan"
    config.task.loss = "hinge"
    config.task.regularizer = "spectral_norm"
    config.task.r1_weight = 1.0
    config.task.discriminator_lr_factor = 1.0

    config.model.name = "gan"
    config.model.latent_dim = 128
    config.model.generator_features = 128
    config.model.discriminator_features = 128
    config.model.conditional = False

    # SNGAN's Adam (Miyato et al. 2018), as in experiments/digits_gan.py.
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 2e-4
    config.optimizer.b1 = 0.0
    config.optimizer.b2 = 0.9
    config.schedule.name = "constant"
    config.schedule.warmup_steps = 0

    config.sample_quality = sample_quality.config_fields("cifar10_resnet20")
    config.sample_quality.num_samples = 5000

    config.train.num_steps = 100_000
    config.train.log_every = 100
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000
    config.train.monitor = "fd"
    config.train.monitor_mode = "min"
    if variant == "quick":
        config.model.latent_dim = 8
        config.model.generator_features = 8
        config.model.discriminator_features = 8
        config.sample_quality.classifier_config = "cifar10_resnet20:quick"
        config.sample_quality.num_samples = 64
        make_quick(config)
    return config
