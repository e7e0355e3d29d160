"""A character-level LSTM language model on the Python standard library's source (stdlib_chars:
256-byte windows with next-byte targets, held-out modules for validation and test).

python -m jaxdl.cli train --config experiments/stdlib_lstm.py --workdir runs/stdlib_lstm
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "stdlib_chars"
    config.data.batch_size = 32
    config.data.eval_batch_size = 64
    config.task.name = "language_model"

    config.model.name = "rnn"
    config.model.cell = "lstm"
    config.model.hidden_size = 256
    config.model.num_layers = 1
    config.model.bidirectional = False  # A language model must not see the future.
    config.model.embed_dim = 64
    config.model.dropout_rate = 0.0
    config.model.head = "per_step"
    config.model.unroll = 1
    config.model.dtype = "float32"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 50

    config.train.num_steps = 1200
    config.train.eval_every = 200
    config.train.checkpoint_every = 400
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.hidden_size = 16
        config.model.embed_dim = 8
        make_quick(config)
    return config
