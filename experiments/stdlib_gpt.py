"""A character-level GPT on the Python standard library's source (held-out modules for test).

python -m jaxdl.train --config experiments/stdlib_gpt.py --workdir runs/stdlib_gpt
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "stdlib_chars"
    config.data.batch_size = 32
    config.data.eval_batch_size = 64
    config.task.name = "language_model"
    config.task.context = 0  # 0: whole 256-byte records.

    config.model.name = "gpt"
    config.model.hidden_size = 192
    config.model.num_layers = 4
    config.model.num_heads = 6
    config.model.mlp_dim = 768
    config.model.max_length = 256
    config.model.positions = "learned"
    config.model.dropout_rate = 0.0
    config.model.dtype = "float32"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.weight_decay = 0.1
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 100

    config.train.num_steps = 600
    config.train.eval_every = 100
    config.train.checkpoint_every = 200
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.hidden_size = 32
        config.model.num_layers = 2
        config.model.num_heads = 2
        config.model.mlp_dim = 64
        make_quick(config)
    return config
