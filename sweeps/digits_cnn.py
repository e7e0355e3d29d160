"""Search space of the digits CNN: learning rate, weight decay, widths and dropout.

jaxdl sweep --config digits_cnn --space sweeps/digits_cnn.py --trials 40 --dir runs/sweep_cnn \
    --workers 2 --config.train.num_steps=600
"""


def space(trial):
    base = trial.suggest_categorical("base_width", [16, 32, 48])
    return {
        "optimizer.learning_rate": trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
        "optimizer.weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.2, log=True),
        "model.conv_features": (base, 2 * base, 4 * base),
        "model.dropout_rate": trial.suggest_float("dropout", 0.0, 0.4),
    }
