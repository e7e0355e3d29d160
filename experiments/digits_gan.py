"""DCGAN-style GAN on scikit-learn's 8x8 digits (pixels scaled to [0, 1]), spectral norm.

python -m jaxdl.train --config experiments/digits_gan.py --workdir runs/digits_gan
python -m jaxdl.train --config experiments/digits_gan.py:quick --workdir runs/smoke

Each step updates the discriminator, then the generator (jaxdl/tasks/gan.py). The best
checkpoint is the one whose samples have the lowest Fréchet distance (`fd`) to the training
digits on digits_cnn's features; `nearest_fake_mse` (held-out digits to their nearest fakes)
is reported beside it.
`--config.model.conditional=True` trains a class-conditional GAN (projection discriminator);
`--config.task.loss=hinge`, `--config.task.regularizer=r1` pick the other loss and regularizer.
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "digits"
    config.data.batch_size = 64
    config.task.name = "gan"
    config.task.loss = "hinge"
    config.task.regularizer = "spectral_norm"
    config.task.r1_weight = 1.0  # Used with regularizer='r1' only.
    config.task.discriminator_lr_factor = 1.0

    config.model.name = "gan"
    config.model.latent_dim = 32
    config.model.generator_features = 32
    config.model.discriminator_features = 32
    config.model.conditional = False

    # SNGAN's Adam (Miyato et al. 2018): no momentum (b1 = 0) and a short second-moment memory
    # suit a moving target. In a sweep on digits (either loss; spectral norm or R1; learning
    # rates 2e-4 to 2e-3; widths 32 to 64) this was among the best by nearest_fake_mse, which
    # stopped improving after about 4000 steps. Hinge without a regularizer collapsed.
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.b1 = 0.0
    config.optimizer.b2 = 0.9
    config.schedule.name = "constant"
    config.schedule.warmup_steps = 0

    config.train.num_steps = 4000
    config.train.log_every = 100
    config.train.eval_every = 500
    config.train.checkpoint_every = 1000
    # The best checkpoint by the Fréchet distance of its samples on digits_cnn's features.
    config.sample_quality = sample_quality.config_fields("digits_cnn")
    config.train.monitor = "fd"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.latent_dim = 8
        config.model.generator_features = 8
        config.model.discriminator_features = 8
        config.sample_quality.classifier_config = "digits_cnn:quick"
        config.sample_quality.num_samples = 64
        make_quick(config)
    return config
