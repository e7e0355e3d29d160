"""A small BERT-style encoder classifies bracket strings over '()[]' as balanced and properly
nested or not (algorithmic/brackets: 2-40 characters, 50k train / 1k validation / 1k test; the
negatives are balanced strings with one character changed).

python -m jaxdl.cli train --config experiments/brackets_encoder.py --workdir runs/brackets_encoder

The `bert` family as it is: post-norm blocks (2, width 64, 4 heads; 90,434 parameters), padding
masked through `lengths`, and the pooler on the first position (the data has no [CLS] token).
One changed character always leaves some bracket type with unequal open and close counts, so
attention that averages over the real positions can separate the classes. With 200 warmup steps
and gradient clipping the post-norm blocks trained stably at 1e-3 on every seed; no pre-norm
option was needed.

Results (2 CPU cores shared with 2-3 other training jobs, load average 8-13; CPU JAX):

| Seed | Test accuracy | Steps | Wall seconds | Steps/s | Load average |
|---|---|---|---|---|---|
| 0 | 100.0% (1000/1000) | 2000 | 365 | 6.3 | 8.4 -> 12.3 |
| 1 | 100.0% (1000/1000) | 2000 | 635 | 3.6 | 11.3 -> 9.7 |
| 2 | 100.0% (1000/1000) | 2000 | 1027 | 2.1 | 9.7 -> 13.4 |

Validation accuracy reached 100% by step 1000 (seed 0), 750 (seed 1) and 1250 (seed 2). The
seed-0 process used 211 CPU seconds in all (data, compilation, 2000 steps, 9 evaluations), so
on an idle 2-core machine training takes under 4 minutes.
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "algorithmic/brackets"
    config.data.batch_size = 64

    config.model.name = "bert"
    config.model.head = "classify"
    config.model.hidden_size = 64
    config.model.num_layers = 2
    config.model.num_heads = 4
    config.model.mlp_dim = 128
    config.model.max_length = 40
    config.model.dropout_rate = 0.0
    config.model.dtype = "float32"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.01
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 200

    config.train.num_steps = 2000
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
