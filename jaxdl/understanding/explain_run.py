"""The work of `jaxdl explain` (explain.py): restore the run, compute, draw, write."""

import argparse
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data
from jaxdl.errors import UserInputError
from jaxdl.understanding import attribution, features, figures
from jaxdl.understanding.explain import ATTRIBUTION_METHODS, SIGNED
from jaxdl.understanding.probes import Classifier

FEATURE_BATCH = 256
VISIBLE_SPACE = "\u2423"  # Open box: a space byte in a token cell.


def explain(args: argparse.Namespace) -> str:
    """Runs the command; returns the lines to print."""
    from jaxdl.compression.inference import check_classifier
    from jaxdl.engine.evaluation import restore_checkpoint
    from jaxdl.engine.workdir import load_config

    run_dir = Path(args.workdir)
    check_classifier(load_config(run_dir), run_dir)  # From config.json, before any restore.
    plan, step, state = restore_checkpoint(run_dir, args.checkpoint)
    if args.split not in plan.dataset.splits:
        raise UserInputError(
            f"--split {args.split!r}: {run_dir}'s dataset has {', '.join(plan.dataset.splits)}."
        )
    model = plan.config.model.get("name", "?")
    context = _Context(plan, state, step, run_dir, model, args)
    if args.method in ATTRIBUTION_METHODS:
        return _attribution(context)
    return {"filters": _filters, "embedding": _embedding, "neighbors": _neighbors}[args.method](
        context
    )


class _Context:
    def __init__(self, plan: Any, state: Any, step: int, run_dir: Path, model: str, args: Any):
        self.plan, self.state, self.step, self.run_dir = plan, state, step, run_dir
        self.model, self.args, self.out = model, args, Path(args.out)

    def batches(self, split: str, limit: int | None, batch_size: int = FEATURE_BATCH):
        """(inputs, labels, extras) of the first `limit` (None: all) examples, in batches."""
        taken = 0
        for batch in data.eval_batches(self.plan.dataset, split, batch_size=batch_size):
            count = int(np.asarray(batch["mask"]).sum())
            if limit is not None:
                count = min(count, limit - taken)
            if count <= 0:
                break
            extras = {"lengths": jnp.asarray(batch["length"][:count])} if "length" in batch else {}
            yield jnp.asarray(batch["input"][:count]), np.asarray(batch["label"][:count]), extras
            taken += count

    def examples(self, split: str, num: int) -> tuple[jax.Array, np.ndarray, dict[str, Any]]:
        inputs, labels, extras = next(self.batches(split, num, batch_size=num))
        return inputs, labels, extras

    def split_features(
        self, split: str, limit: int | None, batches: list | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features (N, D) and labels of `split`, from `batches` when the caller
        has already read them."""
        compiled = jax.jit(lambda state, x, extras: Classifier(state, extras).penultimate(x))
        feats, labels = [], []
        for inputs, batch_labels, extras in batches or self.batches(split, limit):
            feats.append(np.asarray(compiled(self.state, inputs, extras)))
            labels.append(batch_labels)
        return np.concatenate(feats), np.concatenate(labels)


def _attribution(context: _Context) -> str:
    args = context.args
    inputs, labels, extras = context.examples(args.split, args.num or 16)
    classifier = Classifier(context.state, extras)
    logits = np.asarray(jax.jit(classifier.logits)(inputs))
    predictions = logits.argmax(axis=-1)
    targets = jnp.asarray(predictions if args.target == "pred" else labels)
    # Token ids have no gradient: their attributions are taken at the embedded tokens.
    tokens = bool(jnp.issubdtype(inputs.dtype, jnp.integer))
    arrays: dict[str, np.ndarray] = {}
    notes: list[str] = []
    if args.method == "gradcam":
        layer = _gradcam_layer(context, classifier, inputs)
        maps = jax.jit(attribution.gradcam, static_argnums=0)(
            classifier.with_layer(layer), inputs, targets
        )
        notes.append(f"Grad-CAM of layer {layer}")
        display = np.asarray(maps)
    elif args.method == "rollout":
        display = _rollout(context, inputs)
        maps = display
        notes.append("attention rollout (class-independent)")
    else:
        points, logits_fn = inputs, classifier.logits
        if tokens:
            points = classifier.token_embeddings(inputs)
            logits_fn = classifier.logits_of_embeddings(inputs)
            notes.append(f"attributions at the token embeddings {tuple(points.shape)}")
        maps, extra_notes, extra_arrays = _gradient_maps(context, logits_fn, points, targets)
        notes += extra_notes
        arrays.update(extra_arrays)
        signed = args.method in SIGNED
        if tokens:
            display = figures.token_scores(np.asarray(maps), signed)
        else:
            display = figures.reduce_channels(np.asarray(maps), signed, inputs.ndim == 4)
    arrays.update(
        inputs=np.asarray(inputs),
        labels=labels,
        predictions=predictions,
        targets=np.asarray(targets),
        logits=logits,
        maps=np.asarray(maps),
        display_maps=display,
    )
    title = (
        f"{args.method} ({args.target} class), {context.model} step {context.step}, "
        f"{args.split} split"
    )
    if tokens:
        texts = _token_texts(context, np.asarray(inputs), extras)
        fig = figures.token_grid(texts, display, labels, predictions, args.method in SIGNED, title)
    else:
        fig = figures.attribution_grid(
            np.asarray(inputs), display, labels, predictions, args.method in SIGNED, title
        )
    npz = figures.write_outputs(fig, arrays, context.out)
    return "\n".join([*notes, f"wrote {context.out} and {npz}"])


def _token_texts(context: _Context, ids: np.ndarray, extras: dict[str, Any]) -> list[list[str]]:
    """Each example's tokens as short strings (bytes as characters, other vocabularies as ids),
    up to its length."""
    lengths = np.asarray(extras["lengths"]) if "lengths" in extras else [ids.shape[1]] * len(ids)
    as_bytes = context.plan.dataset.vocab_size == 256

    def text(token: int) -> str:
        if as_bytes and 33 <= token < 127:
            return chr(token)
        if as_bytes and token == 32:
            return VISIBLE_SPACE
        return f"#{token}"

    return [[text(int(t)) for t in row[:length]] for row, length in zip(ids, lengths, strict=True)]


def _gradient_maps(
    context: _Context, logits_fn: Any, inputs: jax.Array, targets: jax.Array
) -> tuple[jax.Array, list[str], dict[str, np.ndarray]]:
    """Maps of `inputs` (images, vectors, or a token model's embeddings) by logits_fn."""
    args = context.args
    if args.method == "saliency":
        return jax.jit(attribution.saliency, static_argnums=0)(logits_fn, inputs, targets), [], {}
    if args.method == "gradxinput":
        maps = jax.jit(attribution.gradxinput, static_argnums=0)(logits_fn, inputs, targets)
        return maps, [], {}
    if args.method == "smoothgrad":
        maps = jax.jit(attribution.smoothgrad, static_argnums=(0, 4, 5))(
            logits_fn, inputs, targets, jax.random.key(args.seed), args.samples, args.noise
        )
        return maps, [f"SmoothGrad: {args.samples} samples, noise {args.noise}"], {}
    baseline = _baseline(context, inputs)
    max_steps = 8 * args.steps if args.max_steps is None else args.max_steps
    maps, errors, used = attribution.refined_integrated_gradients(
        logits_fn,
        inputs,
        targets,
        baseline,
        args.steps,
        args.quadrature,
        args.tolerance,
        max_steps,
    )
    note = (
        f"IG completeness ({args.quadrature} rule, {args.baseline} baseline, {len(errors)} examples"
    )
    refined = {int(n): int((used == n).sum()) for n in np.unique(used) if n != args.steps}
    if args.tolerance > 0:
        within = int((errors[used == args.steps] <= args.tolerance).sum())
        note += f"): {within} within {100 * args.tolerance:g}% at {args.steps} steps"
        if refined:
            note += ", refined: " + ", ".join(f"{k} at {n} steps" for n, k in refined.items())
        above = int((errors > args.tolerance).sum())
        if above:
            note += f"; {above} still above at --max-steps {max_steps}"
    else:
        note += f", {args.steps} steps)"
    note += (
        f"; sum of attributions vs f(x) - f(baseline), relative error worst "
        f"{100 * errors.max():.3f}%, median {100 * np.median(errors):.3f}%"
    )
    arrays = {"baseline": np.asarray(baseline), "completeness_error": errors, "steps": used}
    return jnp.asarray(maps), [note], arrays


def _baseline(context: _Context, inputs: jax.Array) -> jax.Array:
    if context.args.baseline == "zeros":
        return jnp.zeros_like(inputs[0])
    if jnp.issubdtype(context.plan.dataset.features["input"].dtype, jnp.integer):
        raise UserInputError(
            f"--baseline mean averages real-valued inputs, and {context.run_dir} reads token "
            "ids; their IG starts from the zero embedding: use --baseline zeros."
        )
    # The train split's mean input, accumulated in float64 on the host.
    total, count = 0.0, 0
    for batch_inputs, _, _ in context.batches("train", None):
        total = total + np.asarray(batch_inputs, np.float64).sum(axis=0)
        count += len(batch_inputs)
    return jnp.asarray(total / count, inputs.dtype)


def _gradcam_layer(context: _Context, classifier: Classifier, inputs: jax.Array) -> str:
    convolutions = classifier.convolutions(inputs)
    if not convolutions:
        raise UserInputError(
            f"--method gradcam needs a convolutional model (cnn, lenet5, resnet); "
            f"{context.run_dir}'s model {context.model!r} has no convolution. Use saliency, "
            "gradxinput, smoothgrad or ig."
        )
    layer = context.args.layer or convolutions[-1]
    if layer not in convolutions:
        raise UserInputError(
            f"--layer {layer!r} is not a convolution of {context.run_dir}'s model "
            f"{context.model!r}; available: {', '.join(convolutions)}."
        )
    return layer


def _rollout(context: _Context, inputs: jax.Array) -> np.ndarray:
    from jaxdl.engine import attention_maps

    weights = attention_maps.attention_weights(context.state, inputs)
    if not weights:
        raise UserInputError(
            f"--method rollout needs a Vision Transformer (model.name='vit'); "
            f"{context.run_dir}'s model {context.model!r} has no attention layers."
        )
    has_cls = getattr(context.plan.task.model, "pool", "gap") == "cls"
    grids = attention_maps.pooled_map(attention_maps.rollout(weights), has_cls)
    # Each patch's weight over all of its pixels (nearest-neighbour upsampling).
    height, width = inputs.shape[1:3]
    return np.repeat(
        np.repeat(grids, height // grids.shape[1], axis=1), width // grids.shape[2], axis=2
    )


def _filters(context: _Context) -> str:
    inputs, _, extras = context.examples(context.args.split, 1)
    layer, kernel = Classifier(context.state, extras).first_layer(inputs)
    if layer.kind == "Conv":
        images = features.conv_filters(np.asarray(kernel))
    else:
        images = features.dense_filters(np.asarray(kernel), tuple(inputs.shape[1:]))
    title = f"{layer.path}: {len(images)} first-layer filters, {context.model} step {context.step}"
    fig = figures.image_grid(images, title)
    npz = figures.write_outputs(fig, {"kernel": np.asarray(kernel), "images": images}, context.out)
    return f"{layer.path} ({layer.kind}): {len(images)} filters\nwrote {context.out} and {npz}"


def _embedding(context: _Context) -> str:
    args = context.args
    feats, labels = context.split_features(args.split, args.num)
    coords = features.embed_2d(feats, args.embedding, args.seed)
    title = (
        f"{args.embedding} of penultimate features ({feats.shape[1]}-d), {len(feats)} "
        f"{args.split} examples, {context.model} step {context.step}"
    )
    fig = figures.embedding_scatter(coords, labels, title)
    arrays = {"features": feats, "coords": coords, "labels": labels}
    npz = figures.write_outputs(fig, arrays, context.out)
    return f"wrote {context.out} and {npz}"


def _per_class_queries(context: _Context) -> tuple[jax.Array, np.ndarray, dict[str, Any]]:
    """Examples of --split spread over the classes: the first ceil(num / classes) of each class
    in split order, `num` in all (default one per class, at most 20), sorted by class."""
    classes = context.plan.dataset.num_classes
    num = context.args.num or min(classes, 20)
    per_class, taken = -(-num // classes), np.zeros(classes, int)
    chosen: list[tuple[int, jax.Array, dict[str, Any]]] = []
    for inputs, labels, extras in context.batches(context.args.split, None):
        for row, label in enumerate(labels):
            if taken[label] < per_class and len(chosen) < num:
                taken[label] += 1
                extra = {key: value[row] for key, value in extras.items()}
                chosen.append((int(label), inputs[row], extra))
        if len(chosen) == num:
            break
    chosen.sort(key=lambda item: item[0])
    extras = {key: jnp.stack([e[key] for _, _, e in chosen]) for key in chosen[0][2]}
    return jnp.stack([x for _, x, _ in chosen]), np.array([c for c, _, _ in chosen]), extras


def _as_line(tokens: list[str]) -> str:
    """Tokens joined into a line of text, spaces as spaces (the token cells mark them)."""
    return "".join(" " if token == VISIBLE_SPACE else token for token in tokens)


def _neighbors(context: _Context) -> str:
    args = context.args
    queries, query_labels, extras = _per_class_queries(context)
    query_feats = np.asarray(Classifier(context.state, extras).penultimate(queries))
    train_batches = list(context.batches("train", None))  # One read for features and pictures.
    train_feats, train_labels = context.split_features("train", None, train_batches)
    indices, distances = features.nearest(query_feats, train_feats, args.neighbors)
    train_inputs = np.concatenate([x for x, _, _ in train_batches])
    title = f"nearest train examples in penultimate-feature space, {context.model}"
    if jnp.issubdtype(queries.dtype, jnp.integer):  # Token sequences: drawn as text.
        lengths = {}
        if "lengths" in extras:
            lengths = {"lengths": np.concatenate([e["lengths"] for _, _, e in train_batches])}
        query_texts = [_as_line(t) for t in _token_texts(context, np.asarray(queries), extras)]
        train_texts = _token_texts(context, train_inputs, lengths)
        neighbor_texts = [[_as_line(train_texts[i]) for i in row] for row in indices]
        fig = figures.text_neighbors(
            query_texts,
            query_labels,
            neighbor_texts,
            train_labels[indices],
            distances,
            title,
        )
    else:
        fig = figures.neighbor_grid(
            np.asarray(queries), query_labels, train_inputs[indices], train_labels[indices], title
        )
    arrays = {
        "queries": np.asarray(queries),
        "query_labels": query_labels,
        "train_indices": indices,
        "distances": distances,
        "neighbor_labels": train_labels[indices],
    }
    npz = figures.write_outputs(fig, arrays, context.out)
    agree = float((train_labels[indices[:, 0]] == query_labels).mean())
    return (
        f"nearest train example has the query's label for {100 * agree:.1f}% of "
        f"{len(queries)} queries\nwrote {context.out} and {npz}"
    )
