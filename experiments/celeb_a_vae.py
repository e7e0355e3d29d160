"""VAE on CelebA faces at 64x64 (Gaussian decoder), for machines with the TFDS data prepared.

python -m jaxdl.train --config experiments/celeb_a_vae.py --workdir runs/celeb_a_vae
Needs `celeb_a` in TFDS's data_dir (data.data_dir); this machine never downloads it.
`--config.model.conditional=True` conditions on data.attribute (default 'Male').
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality

# The ResNet-20 of experiments/cifar10_resnet20.py, trained on the same faces and attribute.
CLASSIFIER = ("cifar10_resnet20", "--config.data.name=celeb_a", "--config.data.image_size=64")


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.data.attribute = "Male"
    config.data.batch_size = 128
    config.task.name = "vae"
    config.task.beta = 1.0
    config.task.iwae_samples = 16

    config.model.name = "vae"
    config.model.latent_dim = 256
    config.model.hidden_sizes = (2048, 1024)
    config.model.activation = "gelu"
    config.model.decoder = "gaussian"
    config.model.conditional = False

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-4
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 1000

    config.sample_quality = sample_quality.config_fields(*CLASSIFIER)

    config.train.num_steps = 50_000
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000
    config.train.monitor = "nelbo"
    config.train.monitor_mode = "min"
    if variant == "quick":
        config.data.image_size = 16
        config.model.hidden_sizes = (32,)
        config.task.iwae_samples = 4
        config.sample_quality.classifier_config = "cifar10_resnet20:quick"
        config.sample_quality.classifier_overrides = (
            "--config.data.name=celeb_a",
            "--config.data.image_size=16",
        )
        make_quick(config)
    return config
