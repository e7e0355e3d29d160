"""MLP on scikit-learn's 8x8 digits.

python -m jaxdl.train --config experiments/digits_mlp.py --workdir runs/digits_mlp
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "digits"
    config.data.batch_size = 64
    # Shifts and label smoothing: 97.8/98.9/98.1% test over seeds 0/1/2, versus 97.5/97.5/97.2%.
    config.data.augment = ("shift",)
    config.task.label_smoothing = 0.1

    config.model.name = "mlp"
    config.model.hidden_sizes = (256, 256)
    config.model.activation = "relu"
    config.model.dropout_rate = 0.2
    config.model.batch_norm = False

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-4
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 50

    config.train.num_steps = 2000
    config.train.eval_every = 100
    config.train.checkpoint_every = 500
    # The best checkpoint by validation loss: accuracy on 180 images moves in steps of 0.56%
    # and ties early, so it picked checkpoints from early in the run.
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.model.hidden_sizes = (32,)
        make_quick(config)
    return config
