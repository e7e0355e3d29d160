"""Class-conditional DDPM with a small U-Net on scikit-learn's 8x8 digits (pixels in [0, 1]).

python -m jaxdl.train --config experiments/digits_diffusion.py --workdir runs/digits_diffusion
python -m jaxdl.train --config experiments/digits_diffusion.py:quick --workdir runs/smoke

Samples with 50 DDIM steps and classifier-free guidance 2 by default; `jaxdl sample --workdir W
--class 3 --steps 250 --out threes.png` asks for others. `--config.model.conditional=False`
trains the unconditional model; `--config.task.target=v`, `--config.task.noise_schedule=linear`
and `--config.task.sampler=ddpm` switch the other choices.
"""

from jaxdl.config import base_config, check_variant, make_quick
from jaxdl.engine import sample_quality


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "digits"
    config.data.batch_size = 64
    config.task.name = "diffusion"
    config.task.noise_schedule = "cosine"
    config.task.timesteps = 1000
    config.task.target = "epsilon"
    config.task.ema_decay = 0.999
    config.task.sampler = "ddim"
    config.task.sample_steps = 50
    config.task.ddim_eta = 0.0
    config.task.label_dropout = 0.1
    config.task.guidance = 2.0

    config.model.name = "unet"
    config.model.base_channels = 16
    config.model.channel_mults = (1, 2)  # 8x8, then 4x4 ...
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = (4,)  # ... with self-attention at 4x4.
    config.model.num_heads = 4
    config.model.dropout_rate = 0.1
    config.model.conditional = True

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 200

    # Fréchet distance and class accuracy of samples on digits_cnn's features.
    config.sample_quality = sample_quality.config_fields("digits_cnn")

    # The sample FD was lowest at step 1000 of a 2500-step run (0.73; 0.99 at 2500, with the
    # class accuracy at 0.99 throughout): more steps buy nothing here.
    config.train.num_steps = 1500
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.monitor = "fd"
    config.train.monitor_mode = "min"

    if variant == "quick":
        # One level (no resampling: tests/test_diffusion.py covers it): XLA:CPU spends about
        # a second compiling each block, and a run compiles the network several times.
        config.model.base_channels = 8
        config.model.channel_mults = (1,)
        config.model.attention_resolutions = ()
        config.model.num_heads = 2
        config.task.sample_steps = 4
        config.sample_quality.classifier_config = "digits_cnn:quick"
        config.sample_quality.num_samples = 64
        make_quick(config)
    return config
