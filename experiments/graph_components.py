"""Synthetic graph classification: a forest of 1 to 4 random trees: how many (4 classes).

python -m jaxdl.train --config experiments/graph_components.py --workdir runs/components_gin
python -m jaxdl.train --config experiments/graph_components.py --config.model.layer=gcn --workdir ...

Every node has the same feature, so only the structure can tell the classes apart; with
`model.layer=mlp` (no edges: the model sees how many nodes a graph has, nothing else) the
run is the structure-blind baseline. Default layer: GIN (sum aggregation, learnable epsilon,
readouts of every layer summed per graph). Packs of 32 graphs per step.
"""

from jaxdl.config import check_variant, graph_config, make_quick, structure_recipe


def get_config(variant: str = ""):
    check_variant(variant)
    config = graph_config(
        "graph_components", "graph_classification", "graph", layer="gin", batch_size=32
    )
    structure_recipe(config, num_layers=3, norm="batch", num_steps=10000)
    if variant == "quick":
        make_quick(config)
    return config
