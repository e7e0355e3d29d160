"""Sentiment of TFDS imdb_reviews with a byte-level BiLSTM (needs it prepared; no downloads).

Each review's first 1024 bytes; validation is the last 10% of the 25,000 training reviews.
Not reproduced: this machine has no imdb_reviews.

python -m jaxdl.train --config experiments/imdb_bilstm.py --workdir runs/imdb_bilstm \
    --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "imdb_reviews"
    config.data.validation_fraction = 0.1
    config.data.batch_size = 64
    config.data.eval_batch_size = 64

    config.model.name = "rnn"
    config.model.cell = "lstm"
    config.model.bidirectional = True
    config.model.num_layers = 2
    config.model.hidden_size = 256
    config.model.embed_dim = 64
    config.model.dropout_rate = 0.3
    config.model.head = "classify"
    config.model.pool = "max"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.01
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 200

    config.train.num_steps = 4000
    config.train.eval_every = 250
    config.train.checkpoint_every = 500

    if variant == "quick":
        config.model.hidden_size = 16
        config.model.num_layers = 1
        config.model.embed_dim = 8
        make_quick(config)
    return config
