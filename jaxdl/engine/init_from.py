"""Starting a run from another run's parameters: `config.init_from=WORKDIR` or `WORKDIR:STEP`,
or from a Hugging Face BERT checkpoint: `hf:DIR` (init_from_hf.py).

WORKDIR alone means its best checkpoint (as the loop keeps it: the best step named by the
newest checkpoint's bookkeeping, else the newest). A fresh run starts from the source's
parameters and model state (e.g. batch-norm statistics); its optimizer state, step and random
key are its own. Leaf by leaf, by path: the same path and shape is copied; a ViT position
embedding of another length (another image size) is interpolated; anything else (the head of a
new number of classes, a path the source lacks) keeps its fresh initialisation. The source's
arrays are read as NumPy arrays from its Orbax checkpoint, without building its task, and placed
with the new run's shardings.

`check` runs before a new workdir is written to; `start_state` builds the state of a run that
starts without a checkpoint of its own, and writes what it did to `<workdir>/init_from.json`,
which summary.json repeats (`summary_entry`), also after a resume.

The same reading fills a distilling run's frozen teacher (`config.distill.teacher`, same forms):
every array of the teacher's state (`teacher/...`) comes from that run, whose checkpoint must
hold exactly the model its config.json describes; the record goes to distill_teacher.json.
"""

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdl.engine import init_from_hf, run_source
from jaxdl.engine.checkpoints import READABLE_FORMATS
from jaxdl.engine.run_source import FORM, Source, locate, saved_steps  # noqa: F401 (API)
from jaxdl.engine.setup import Setup, init_state
from jaxdl.engine.workdir import write_json
from jaxdl.errors import one_line
from jaxdl.logs import absl_warnings_off
from jaxdl.models.vit import interpolate_position_embeddings
from jaxdl.optim import param_paths

REPORT_FILE = "init_from.json"
TEACHER_FILE = "distill_teacher.json"
TEACHER = "teacher/"  # Where a distilling task keeps the teacher's variables in its state.
# The parts of a train state that come from the source; everything else starts fresh.
MERGED = ("params", "model_state")


@dataclasses.dataclass
class Merge:
    """What happens to each merged leaf of the new state (paths such as 'params/Dense_0/kernel')."""

    copied: list[str] = dataclasses.field(default_factory=list)
    # path -> (shape in the source, or None when the source lacks it; shape here)
    reinitialized: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...]]] = dataclasses.field(
        default_factory=dict
    )
    interpolated: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = dataclasses.field(
        default_factory=dict
    )
    # path -> whether a class token comes first (for interpolate_position_embeddings).
    has_cls: dict[str, bool] = dataclasses.field(default_factory=dict)


def _state_dir(spec: str, source: Source) -> Path:
    step_dir = source.workdir.absolute() / "checkpoints" / str(source.step)
    if (step_dir / "meta").exists():
        try:
            fmt = run_source.read_json_item(step_dir / "meta").get("checkpoint_format")
        except Exception:
            fmt = None
        if fmt not in READABLE_FORMATS:
            raise run_source.fail(
                spec,
                f"checkpoint {step_dir} has checkpoint format {fmt!r}; this jaxdl reads "
                f"{run_source.listed(list(READABLE_FORMATS))}.",
                source.field,
            )
    return step_dir / "state"


def _metadata(spec: str, source: Source) -> dict[str, Any]:
    """The saved state's tree of array metadata, only the parts in MERGED."""
    state_dir = _state_dir(spec, source)
    try:
        with absl_warnings_off(), ocp.PyTreeCheckpointer() as reader:
            tree = reader.metadata(state_dir).item_metadata.tree
    except Exception as error:
        raise run_source.fail(
            spec, f"checkpoint {state_dir} cannot be read ({one_line(error)[:200]}).", source.field
        ) from error
    return {key: tree[key] for key in MERGED if isinstance(tree, dict) and tree.get(key)}


def source_shapes(spec: str, source: Source) -> dict[str, tuple[int, ...]]:
    paths, leaves, _ = param_paths(_metadata(spec, source))
    return {path: tuple(leaf.shape) for path, leaf in zip(paths, leaves, strict=True)}


def read_arrays(spec: str, source: Source) -> dict[str, np.ndarray]:
    """The source's parameters and model state, as NumPy arrays by path."""
    wanted = _metadata(spec, source)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    args = ocp.args.PyTreeRestore(item=wanted, restore_args=restore_args, partial_restore=True)
    with absl_warnings_off(), ocp.PyTreeCheckpointer() as reader:
        restored = reader.restore(_state_dir(spec, source), args=args)
    paths, leaves, _ = param_paths(restored)
    return dict(zip(paths, leaves, strict=True))


def plan_merge(source: dict[str, tuple[int, ...]], target: dict[str, tuple[int, ...]]) -> Merge:
    """Which leaves of `target` (path -> shape, MERGED parts only) are copied, interpolated or
    re-initialised from a source of leaves `source` (path -> shape)."""
    merge = Merge()
    for path, shape in target.items():
        old = source.get(path)
        if old == shape:
            merge.copied.append(path)
            continue
        module, _, name = path.rpartition("/")
        has_cls = f"{module}/cls" in target
        if old is not None and name == "position_embedding" and _interpolable(old, shape, has_cls):
            merge.interpolated[path] = (old, shape)
            merge.has_cls[path] = has_cls
        else:
            merge.reinitialized[path] = (old, shape)
    return merge


def _interpolable(old: tuple[int, ...], new: tuple[int, ...], has_cls: bool) -> bool:
    """(1, N, D) -> (1, M, D) with square patch grids (N - cls and M - cls tokens)."""
    if len(old) != 3 or len(new) != 3 or old[0] != 1 or new[0] != 1 or old[2] != new[2]:
        return False
    grids = (old[1] - int(has_cls), new[1] - int(has_cls))
    return all(side > 0 and math.isqrt(side) ** 2 == side for side in grids)


def _target_shapes(abstract_state: Any) -> dict[str, tuple[int, ...]]:
    paths, leaves, _ = param_paths(abstract_state)
    return {
        path: tuple(leaf.shape)
        for path, leaf in zip(paths, leaves, strict=True)
        if path.split("/")[0] in MERGED
    }


def _checked_merge(spec: str, source: Source, plan: Setup) -> Merge:
    shapes = source_shapes(spec, source)
    merge = plan_merge(shapes, _target_shapes(plan.abstract_state))
    if not merge.copied and not merge.interpolated:
        tops = sorted({"/".join(path.split("/")[:2]) for path in shapes})
        raise run_source.fail(
            spec,
            f"step {source.step} of {source.workdir} shares no parameter (same path and shape) "
            f"with this model; it has {', '.join(tops) or 'no parameters'}. Start from a run of "
            "the same model family.",
            source.field,
        )
    return merge


def _hf_merge(spec: str, plan: Setup) -> tuple[dict[str, np.ndarray], Merge]:
    arrays = init_from_hf.checked_arrays(spec, plan)
    shapes = {path: tuple(value.shape) for path, value in arrays.items()}
    return arrays, plan_merge(shapes, _target_shapes(plan.abstract_state))


def check(plan: Setup, run_dir: Path) -> None:
    """The checks of `config.init_from` and `config.distill.teacher` for a new run in `run_dir`,
    before it is written to."""
    spec = plan.config.get("init_from", "")
    if spec and init_from_hf.is_hf(spec):
        _hf_merge(spec, plan)
    elif spec:
        _checked_merge(spec, locate(spec, run_dir), plan)
    teacher = plan.config.distill.teacher
    if teacher:
        _teacher_source(teacher, run_dir, plan)


def start_state(plan: Setup, workdir: Path, report: Callable[[str], None]) -> Any:
    """A fresh state, from `config.init_from`'s source when one is set (see the module doc), with
    the teacher's variables from `config.distill.teacher`'s run when that is set."""
    state = _from_init_from(plan, init_state(plan), workdir, report)
    teacher = plan.config.distill.teacher
    if not teacher:
        return state
    source = _teacher_source(teacher, workdir, plan)
    arrays = read_arrays(teacher, source)
    paths, leaves, treedef = param_paths(state)
    state = jax.tree_util.tree_unflatten(
        treedef,
        [
            _placed(arrays[path.removeprefix(TEACHER)], leaf) if path.startswith(TEACHER) else leaf
            for path, leaf in zip(paths, leaves, strict=True)
        ],
    )
    record = {"workdir": str(source.workdir), "step": source.step, "copied": len(arrays)}
    if jax.process_index() == 0:
        write_json(workdir / TEACHER_FILE, record)
    report(f"jaxdl: distilling from {source.workdir} step {source.step} ({len(arrays)} arrays)")
    return state


def _teacher_source(spec: str, own_workdir: Path, plan: Setup) -> Source:
    """The teacher's run, checked to hold exactly the teacher's variables of this state."""
    source = locate(spec, own_workdir, field="distill.teacher")
    shapes = source_shapes(spec, source)
    paths, leaves, _ = param_paths(plan.abstract_state)
    wanted = {
        path.removeprefix(TEACHER): tuple(leaf.shape)
        for path, leaf in zip(paths, leaves, strict=True)
        if path.startswith(TEACHER)
    }
    if shapes != wanted:
        differ = sorted(path for path in {*shapes, *wanted} if shapes.get(path) != wanted.get(path))
        raise run_source.fail(
            spec,
            f"step {source.step} of {source.workdir} does not hold the model its config.json "
            f"describes ({', '.join(differ[:3])} differ); give a finished classifier run.",
            source.field,
        )
    return source


def _from_init_from(plan: Setup, state: Any, workdir: Path, report: Callable[[str], None]) -> Any:
    spec = plan.config.get("init_from", "")
    if not spec:
        return state
    if init_from_hf.is_hf(spec):
        arrays, merge = _hf_merge(spec, plan)
        origin = {"hf": str(init_from_hf.directory(spec).resolve())}
        if jax.process_index() == 0:
            init_from_hf.keep_source_files(spec, workdir)
    else:
        source = locate(spec, workdir)
        merge = _checked_merge(spec, source, plan)
        arrays = read_arrays(spec, source)
        origin = {"workdir": str(source.workdir), "step": source.step}
    paths, leaves, treedef = param_paths(state)
    merged = []
    for path, leaf in zip(paths, leaves, strict=True):
        if path in merge.interpolated:
            value = interpolate_position_embeddings(
                arrays[path], leaf.shape[1], merge.has_cls[path]
            )
            merged.append(_placed(np.asarray(value), leaf))
        elif path in merge.copied:
            merged.append(_placed(arrays[path], leaf))
        else:
            merged.append(leaf)
    record = _record(origin, merge)
    if jax.process_index() == 0:
        write_json(workdir / REPORT_FILE, record)
    report(describe(record, merge))
    return jax.tree_util.tree_unflatten(treedef, merged)


def _placed(value: np.ndarray, like: jax.Array) -> jax.Array:
    """`value` as an array of `like`'s dtype and sharding (over every process's devices)."""
    value = np.asarray(value, dtype=like.dtype)
    return jax.make_array_from_callback(like.shape, like.sharding, lambda index: value[index])


def _record(origin: dict[str, Any], merge: Merge) -> dict[str, Any]:
    """The report: the source ('workdir' and 'step', or 'hf') and what was done per array."""
    return {
        **origin,
        "copied": len(merge.copied),
        "reinitialized": sorted(merge.reinitialized),
        "interpolated": sorted(merge.interpolated),
    }


def _shape(shape: tuple[int, ...] | None) -> str:
    return "(absent)" if shape is None else str(tuple(shape)).replace(" ", "")


def describe(record: dict[str, Any], merge: Merge) -> str:
    """The one line a run prints about where its parameters came from."""
    where = f"hf:{record['hf']}" if "hf" in record else f"{record['workdir']} step {record['step']}"
    line = f"jaxdl: init_from {where}: copied {record['copied']} arrays"
    if merge.reinitialized:
        line += "; re-initialised " + ", ".join(
            f"{path} {_shape(old)}->{_shape(new)}"
            for path, (old, new) in sorted(merge.reinitialized.items())
        )
    if merge.interpolated:
        line += "; interpolated " + ", ".join(
            f"{path} {_shape(old)}->{_shape(new)}"
            for path, (old, new) in sorted(merge.interpolated.items())
        )
    return line


def summary_entry(workdir: Path) -> dict[str, Any]:
    """{'init_from': the report, 'distill_teacher': the teacher's} for summary.json, each when
    the run had one."""
    entries = {}
    for key, name in (("init_from", REPORT_FILE), ("distill_teacher", TEACHER_FILE)):
        path = workdir / name
        try:
            if path.is_file():
                entries[key] = json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    return entries
