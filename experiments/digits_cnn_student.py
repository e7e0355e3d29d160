"""A small CNN (8-16-32 channels, one convolution per stage: 6k parameters, 2% of digits_cnn's
288k) on the 8x8 digits, without augmentation or dropout: the student of README "Compression".

python -m jaxdl.train --config experiments/digits_cnn_student.py --workdir runs/student
python -m jaxdl.train --config experiments/digits_cnn_student.py --workdir runs/student_kd \
    --config.distill.teacher=runs/digits_cnn
"""

from jaxdl.config import check_variant, experiment_config


def get_config(variant: str = ""):
    check_variant(variant)
    config = experiment_config("digits_cnn", variant)
    if variant != "quick":
        config.model.conv_features = (8, 16, 32)
        config.model.convs_per_stage = 1
    # Without shifts and dropout the small net overfits the 1,257 training images: the regime
    # where a teacher's soft targets help (97.6% alone, 98.4% distilled; README).
    config.data.augment = ()
    config.model.dropout_rate = 0.0
    return config
