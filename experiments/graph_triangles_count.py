"""Graph regression: how many triangles a random graph has.

python -m jaxdl.train --config experiments/graph_triangles_count.py --workdir runs/tri_gin
python -m jaxdl.train --config experiments/graph_triangles_count.py --config.model.layer=gat ...

The graphs of graph_triangles, with the exact triangle count as the target (mean squared
error; `mae` is monitored and reported). Constant node features, as in graph_triangles.
"""

from jaxdl.config import check_variant, graph_config, make_quick, structure_recipe


def get_config(variant: str = ""):
    check_variant(variant)
    config = graph_config(
        "graph_triangles", "graph_regression", "graph", layer="gin", batch_size=32
    )
    structure_recipe(config, num_layers=3, norm="batch", num_steps=3000)
    config.train.monitor = "mae"
    config.train.monitor_mode = "min"
    if variant == "quick":
        make_quick(config)
    return config
