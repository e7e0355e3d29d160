"""Zachary's karate club: which club each member joins, from one labelled member per club.

python -m jaxdl.train --config experiments/karate_club.py --workdir runs/karate_gcn
python -m jaxdl.train --config experiments/karate_club.py --config.model.layer=gat --workdir ...

Node classification, full graph every step (34 nodes, 78 edges, one-hot node identities as
features). Train labels: node 0 (Mr. Hi) and node 33 (the officer), nothing else; the test
split is the other 32 members. The validation split is the same two labelled nodes (34 nodes
leave no honest held-out set), so the monitored metric is their loss: the run keeps its last,
best-fitting weights and never looks at a test label. Layers: gcn (default), gat, gin, sage,
mpnn, mlp (no edges: the structure-blind baseline).
"""

from jaxdl.config import check_variant, full_graph_schedule, graph_config, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = graph_config("karate_club", "node_classification", "node", layer="gcn")
    config.model.hidden = 16
    config.model.num_layers = 3  # Two left 30 of 32 for seeds 1 and 2; three: 31 for all.
    config.model.dropout = 0.5
    config.optimizer.learning_rate = 1e-2
    config.optimizer.weight_decay = 5e-4
    full_graph_schedule(config, num_steps=200)
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"
    if variant == "quick":
        make_quick(config)
    return config
