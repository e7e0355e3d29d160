"""Synthetic graph classification: a random tree, or a tree plus one edge that closes a cycle (2 classes).

python -m jaxdl.train --config experiments/graph_cycles.py --workdir runs/cycles_gin
python -m jaxdl.train --config experiments/graph_cycles.py --config.model.layer=gcn --workdir ...

Every node has the same feature, so only the structure can tell the classes apart; with
`model.layer=mlp` (no edges: the model sees how many nodes a graph has, nothing else) the
run is the structure-blind baseline. Default layer: GIN (sum aggregation, learnable epsilon,
readouts of every layer summed per graph). Packs of 32 graphs per step.
"""

from jaxdl.config import check_variant, graph_config, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = graph_config(
        "graph_cycles", "graph_classification", "graph", layer="gin", batch_size=32
    )
    config.model.hidden = 64
    config.model.num_layers = 2
    config.model.jumping_knowledge = True
    config.model.pooling = "sum"
    config.optimizer.learning_rate = 1e-2
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 100
    config.train.num_steps = 3000
    config.train.log_every = 100
    config.train.eval_every = 250
    config.train.checkpoint_every = 1000
    if variant == "quick":
        make_quick(config)
    return config
