"""Masked-language-model pretraining (BERT's objective) of a small encoder on the Python standard
library's source: 256-byte windows, 15% of the bytes picked, masked-token accuracy reported.

python -m jaxdl.cli train --config experiments/stdlib_bert_mlm.py --workdir runs/stdlib_bert_mlm
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "stdlib_chars"
    config.data.batch_size = 16
    config.data.eval_batch_size = 64

    config.task.name = "masked_lm"
    config.task.mask_rate = 0.15
    config.task.mask_id = -1  # Byte data has no spare id: the mask token becomes id 256.
    config.task.keep_ids = ()  # No [CLS]/[SEP] in raw bytes; every position may be picked.

    config.model.name = "bert"
    config.model.head = "mlm"
    config.model.hidden_size = 64
    config.model.num_layers = 2
    config.model.num_heads = 4
    config.model.mlp_dim = 256
    config.model.max_length = 256
    config.model.dropout_rate = 0.0
    config.model.dtype = "float32"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.weight_decay = 0.01
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 100

    config.train.num_steps = 1000
    config.train.eval_every = 250
    config.train.checkpoint_every = 500
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.hidden_size = 32
        config.model.num_layers = 1
        config.model.num_heads = 2
        config.model.mlp_dim = 64
        make_quick(config)
    return config
