"""What a classifier's layers respond to: first-layer filters, a 2-D map of its penultimate
features, and the training examples nearest to a query in that feature space."""

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from jaxdl.errors import UserInputError

EMBEDDINGS = ("pca", "tsne")


def conv_filters(kernel: np.ndarray) -> np.ndarray:
    """(out, kh, kw, channels) images of a 2-D convolution kernel (kh, kw, in, out), each
    scaled to [0, 1] on its own so that its pattern, not its norm, shows. A 1-D kernel
    (k, in, out) becomes (out, 1, k, in); more than 3 input channels are averaged to 1."""
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim == 3:
        kernel = kernel[None]
    if kernel.ndim != 4:
        raise UserInputError(f"a first-layer kernel of shape {kernel.shape} is not an image.")
    images = np.moveaxis(kernel, -1, 0)
    if images.shape[-1] not in (1, 3):
        images = images.mean(axis=-1, keepdims=True)
    return _unit_range(images)


def dense_filters(kernel: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """(out, *input_shape) images of a first dense layer's weight rows: each hidden unit's
    weights over the (flattened) input, shaped back into the input."""
    kernel = np.asarray(kernel, np.float32)
    if kernel.shape[0] != int(np.prod(input_shape)):
        raise UserInputError(
            f"the first dense layer reads {kernel.shape[0]} features, not the "
            f"{'x'.join(map(str, input_shape))} input, so its weights are no image; "
            "--method filters is for convolutions and MLPs on images (use embedding or "
            "neighbors here)."
        )
    return _unit_range(kernel.T.reshape(-1, *input_shape))


def _unit_range(images: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, images.ndim))
    low = images.min(axis=axes, keepdims=True)
    spread = images.max(axis=axes, keepdims=True) - low
    return (images - low) / np.where(spread > 0, spread, 1.0)


def embed_2d(features: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(N, 2) coordinates of (N, D) features by PCA or t-SNE (scikit-learn), seeded."""
    if method not in EMBEDDINGS:
        raise UserInputError(f"--embedding {method!r}: choose one of {', '.join(EMBEDDINGS)}.")
    features = np.asarray(features, np.float64)
    if len(features) < 3:
        raise UserInputError(f"a 2-D embedding needs at least 3 examples; got {len(features)}.")
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    perplexity = min(30.0, (len(features) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(features)


def nearest(queries: np.ndarray, references: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), each (Q, k): the `k` references nearest each query (Euclidean),
    nearest first."""
    if not 1 <= k <= len(references):
        raise UserInputError(f"--neighbors {k}: choose 1 to {len(references)}.")
    index = NearestNeighbors(n_neighbors=k).fit(references)
    distances, indices = index.kneighbors(queries)
    return indices, distances
