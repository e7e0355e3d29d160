"""A character-level GPT on TFDS tiny_shakespeare (needs it prepared; no downloads).

nanoGPT's character-level Shakespeare model (6 layers, width 384, 6 heads, context 256,
dropout 0.2, 5000 steps of 64 sequences) reports a validation loss of about 1.47 nats per
character, 2.12 bits (Karpathy, nanoGPT README). The same sizes and schedule here; bytes are the
tokens (the text is ASCII). Not reproduced: this machine has no tiny_shakespeare.

python -m jaxdl.train --config experiments/tiny_shakespeare_gpt.py \
    --workdir runs/tiny_shakespeare_gpt --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "tiny_shakespeare"
    config.data.batch_size = 64
    config.data.eval_batch_size = 64
    config.task.name = "language_model"

    config.model.name = "gpt"
    config.model.hidden_size = 384
    config.model.num_layers = 6
    config.model.num_heads = 6
    config.model.mlp_dim = 1536
    config.model.max_length = 256
    config.model.dropout_rate = 0.2
    config.model.dtype = "float32"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.b2 = 0.99
    config.optimizer.weight_decay = 0.1
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 100

    config.train.num_steps = 5000
    config.train.eval_every = 250
    config.train.checkpoint_every = 500
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.hidden_size = 32
        config.model.num_layers = 2
        config.model.num_heads = 2
        config.model.mlp_dim = 64
        make_quick(config)
    return config
