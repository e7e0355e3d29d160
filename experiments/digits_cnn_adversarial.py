"""digits_cnn trained adversarially: PGD (L-inf, eps 0.1 on [0, 1] pixels) in every step.

python -m jaxdl.train --config experiments/digits_cnn_adversarial.py --workdir runs/digits_adv
jaxdl attack --workdir runs/digits_adv --method pgd --eps 0.1 --norm linf --steps 20

Each step attacks the current parameters with 7 PGD steps before the loss (tasks/adversarial.py),
so a step costs about 8 normal ones. Training at the same eps as the evaluation's 20-step PGD.
"""

from jaxdl.config import check_variant, experiment_config, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = experiment_config("digits_cnn", variant)
    config.task.adversarial = "pgd"
    config.task.adversarial_eps = 0.1
    config.task.adversarial_norm = "linf"
    config.task.adversarial_steps = 7
    config.task.adversarial_step_size = 0.0  # 2.5 * eps / steps
    if variant == "quick":
        config.task.adversarial_steps = 2
        make_quick(config)
    return config
