"""digits_cnn on a long-tailed digits train split (50:1): README "Imbalanced data".

Class k keeps int(n_max * 50^(-k / 9)) of its train images (about 129 of digit 0 down to 2 of
digit 9); validation and test stay as they are. Plain training by default; the remedies are one
field each:

jaxdl train --config digits_longtail --workdir runs/lt_plain
jaxdl train --config digits_longtail --workdir runs/lt_balanced --config.data.sampler=balanced
jaxdl train --config digits_longtail --workdir runs/lt_inverse \
    --config.task.class_weighting=inverse
jaxdl train --config digits_longtail --workdir runs/lt_focal --config.task.focal_gamma=2
"""

from jaxdl.config import check_variant, experiment_config


def get_config(variant: str = ""):
    check_variant(variant)
    config = experiment_config("digits_cnn", variant)
    config.data.imbalance_ratio = 50.0
    return config
