"""Search space of the digits MLP: learning rate, weight decay, width and dropout.

jaxdl sweep --config digits_mlp --space sweeps/digits_mlp.py --trials 16 --dir runs/sweep_mlp \
    --workers 2 --config.train.num_steps=400

`space(trial)` returns config overrides; the names given to `trial.suggest_*` are the study's
parameters (what the report's table, plots and the Optuna dashboard show).
"""


def space(trial):
    width = trial.suggest_categorical("width", [64, 128, 256, 512])
    return {
        "optimizer.learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True),
        "optimizer.weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        "model.hidden_sizes": (width, width),
        "model.dropout_rate": trial.suggest_float("dropout", 0.0, 0.5),
    }


# For --sampler grid: the values of each parameter above.
GRID = {
    "width": [128, 256],
    "learning_rate": [1e-3, 3e-3, 1e-2],
    "weight_decay": [1e-4],
    "dropout": [0.0, 0.2],
}
