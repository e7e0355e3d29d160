"""OGB's molecular property prediction, ogbg-molpcba: 128 bioassays per molecule.

python -m jaxdl.train --config experiments/ogbg_molpcba.py --workdir runs/molpcba_gin \
    --config.data.data_dir=/path/with/ogbg_molpcba

For machines that have the TFDS dataset prepared (jaxdl never downloads it). Multi-label graph
classification with missing labels; the metric is OGB's: average precision per assay, averaged
over the assays with both a positive and a negative label. A GIN of 5 layers and 300 units
with sum pooling, as OGB's baseline. Atom and bond features are the dataset's integer codes,
fed as numbers (OGB's baseline embeds each code instead).
"""

from jaxdl.config import check_variant, graph_config, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = graph_config("ogbg_molpcba", "graph_classification", "graph", layer="gin")
    config.data.batch_size = 256
    config.data.eval_batch_size = 1024
    config.model.hidden = 300
    config.model.num_layers = 5
    config.model.dropout = 0.5
    config.model.norm = "layer"
    config.optimizer.learning_rate = 1e-3
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 1000
    config.train.num_steps = 100_000
    config.train.log_every = 500
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000
    config.train.monitor = "average_precision"
    if variant == "quick":
        make_quick(config)
    return config
