"""A byte-level GPT on TFDS lm1b, one sentence per sequence (needs it prepared; no downloads).

Sentences are cut at 255 bytes and padded; padding never counts (`target_mask`). Validation is
the last 1% of train (lm1b ships train and test only). Not reproduced: this machine has no lm1b.

python -m jaxdl.train --config experiments/lm1b_gpt.py --workdir runs/lm1b_gpt \
    --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "lm1b"
    config.data.validation_fraction = 0.01
    config.data.batch_size = 128
    config.data.eval_batch_size = 128
    config.task.name = "language_model"

    config.model.name = "gpt"
    config.model.hidden_size = 512
    config.model.num_layers = 8
    config.model.num_heads = 8
    config.model.mlp_dim = 2048
    config.model.max_length = 256
    config.model.positions = "rotary"
    config.model.norm = "rmsnorm"
    config.model.mlp = "swiglu"
    config.model.dropout_rate = 0.0
    config.model.dtype = "bfloat16"
    config.model.attention = "auto"  # "cudnn" on a GPU: the fused cuDNN kernel.

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 6e-4
    config.optimizer.b2 = 0.95
    config.optimizer.weight_decay = 0.1
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 2000

    config.train.num_steps = 100_000
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.hidden_size = 32
        config.model.num_layers = 2
        config.model.num_heads = 2
        config.model.mlp_dim = 64
        config.model.dtype = "float32"
        make_quick(config)
    return config
