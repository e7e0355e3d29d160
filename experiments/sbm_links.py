"""Link prediction on sbm: which held-out edges exist, against random node pairs.

python -m jaxdl.train --config experiments/sbm_links.py --workdir runs/sbm_links_gcn
python -m jaxdl.train --config experiments/sbm_links.py --config.model.layer=gat --workdir ...

The graph's edges minus 5% (validation) and 10% (test) held out; the model embeds the nodes
from the remaining edges and scores a pair by the dot product of its embeddings. Each positive
gets `task.negatives` random negatives (a corrupted endpoint). Monitored: validation AUC.
"""

from jaxdl.config import check_variant, full_graph_schedule, graph_config, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = graph_config("sbm_links", "link_prediction", "node", layer="gcn")
    config.task.negatives = 1
    config.task.embedding_dim = 32
    config.model.hidden = 64
    config.model.num_layers = 2
    config.optimizer.learning_rate = 1e-2
    full_graph_schedule(config, num_steps=300)
    config.train.monitor = "auc"
    if variant == "quick":
        make_quick(config)
    return config
