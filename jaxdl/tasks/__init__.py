"""Tasks: loss, metrics and step logic per kind of problem. `build_task` picks one by config.task.name."""

from typing import Any

import ml_collections

from jaxdl.errors import unknown_name_error
from jaxdl.tasks.base import Task
from jaxdl.tasks.classification import ClassificationTask
from jaxdl.tasks.diffusion import DiffusionTask
from jaxdl.tasks.gan import GANTask
from jaxdl.tasks.graph import (
    GraphClassificationTask,
    GraphRegressionTask,
    NodeClassificationTask,
)
from jaxdl.tasks.language_model import LanguageModelTask
from jaxdl.tasks.link_prediction import LinkPredictionTask
from jaxdl.tasks.masked_lm import MaskedLMTask
from jaxdl.tasks.seq2seq import Seq2SeqTask
from jaxdl.tasks.vae import VAETask

TASKS = {
    "classification": ClassificationTask,
    "language_model": LanguageModelTask,
    "masked_lm": MaskedLMTask,
    "seq2seq": Seq2SeqTask,
    "vae": VAETask,
    "gan": GANTask,
    "diffusion": DiffusionTask,
    "node_classification": NodeClassificationTask,
    "graph_classification": GraphClassificationTask,
    "graph_regression": GraphRegressionTask,
    "link_prediction": LinkPredictionTask,
}
TASK_NAMES = tuple(TASKS)


def build_task(
    config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
) -> Task:
    """`dataset` needs `num_classes` and `input_shape` (a `jaxdl.data.DatasetSpec`).

    `batch_axis_name` names the mesh's batch axes when steps run per device (shard_map mode).
    """
    if config.task.name not in TASKS:
        raise unknown_name_error("task", config.task.name, TASKS)
    return TASKS[config.task.name].from_config(config, dataset, batch_axis_name=batch_axis_name)


def task_generates_images(name: str) -> bool:
    """Whether task `name` makes images (`jaxdl sample` then writes images, not text)."""
    task = TASKS.get(name)
    return task is not None and task.generate_images is not Task.generate_images


__all__ = ["TASK_NAMES", "Task", "build_task", "task_generates_images"]
