"""VAE on scikit-learn's 8x8 digits (pixels scaled to [0, 1], Bernoulli decoder).

python -m jaxdl.train --config experiments/digits_vae.py --workdir runs/digits_vae
python -m jaxdl.train --config experiments/digits_vae.py:quick --workdir runs/smoke

Held-out figures in nats per image: `nelbo` and the 64-sample importance-weighted `iwae_nll`.
`--config.model.conditional=True` reads the labels too; `--config.task.beta=4.0` weights the KL.
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "digits"
    config.data.batch_size = 64
    config.task.name = "vae"
    config.task.beta = 1.0
    config.task.iwae_samples = 64

    config.model.name = "vae"
    config.model.latent_dim = 16
    config.model.hidden_sizes = (256, 256)
    config.model.activation = "gelu"
    config.model.decoder = "bernoulli"
    config.model.conditional = False

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 100

    # Fréchet distance of samples on digits_cnn's features (trained once, cached).
    config.sample_quality = sample_quality.config_fields("digits_cnn")

    config.train.num_steps = 3000
    config.train.eval_every = 250
    config.train.checkpoint_every = 500
    config.train.monitor = "nelbo"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.hidden_sizes = (32,)
        config.task.iwae_samples = 4
        config.sample_quality.classifier_config = "digits_cnn:quick"
        make_quick(config)
    return config
