"""VAE on MNIST (28x28, Bernoulli decoder), for machines with the TFDS data prepared.

python -m jaxdl.train --config experiments/mnist_vae.py --workdir runs/mnist_vae
Needs `mnist` in TFDS's data_dir (data.data_dir); this machine never downloads it.
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "mnist"
    config.data.batch_size = 128
    config.task.name = "vae"
    config.task.beta = 1.0
    config.task.iwae_samples = 64

    config.model.name = "vae"
    config.model.latent_dim = 32
    config.model.hidden_sizes = (512, 256)
    config.model.activation = "gelu"
    config.model.decoder = "bernoulli"
    config.model.conditional = False

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 500

    # The digits CNN, trained on MNIST instead, gives the features.
    config.sample_quality = sample_quality.config_fields(
        "digits_cnn", "--config.data.name=mnist", "--config.train.num_steps=3000"
    )

    config.train.num_steps = 20_000
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    config.train.monitor = "nelbo"
    config.train.monitor_mode = "min"
    if variant == "quick":
        config.model.hidden_sizes = (32,)
        config.task.iwae_samples = 4
        config.sample_quality.classifier_config = "digits_cnn:quick"
        make_quick(config)
    return config
