"""Node classification at scale: a 10,000-node stochastic block model, 5 communities.

python -m jaxdl.train --config experiments/sbm.py --workdir runs/sbm_gcn
python -m jaxdl.train --config experiments/sbm.py --config.model.layer=gat --workdir ...
python -m jaxdl.train --config experiments/sbm.py --config.model.layer=mlp --workdir ...

Full graph every step (10,000 nodes, over 100,000 edges). Node features are noisy community
means, so a feature-only MLP (`model.layer=mlp`) does well short of a GNN that averages over
neighbours. Labels: 10% of the nodes train, 10% validate, 80% test.
"""

from jaxdl.config import check_variant, full_graph_schedule, graph_config, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = graph_config("sbm", "node_classification", "node", layer="gcn")
    config.model.hidden = 64
    config.model.num_layers = 2
    config.model.dropout = 0.5
    config.optimizer.learning_rate = 1e-2
    config.optimizer.weight_decay = 5e-4
    full_graph_schedule(config, num_steps=100)
    if variant == "quick":
        make_quick(config)
    return config
