"""2-D maps of feature spaces: UMAP, t-SNE, PCA and LDA, fitted on clean features only.

The map is fitted on the *clean* features; adversarial features are then placed into that
same map (``transform``), so an arrow from a clean point to its adversarial copy shows
where the attack moved it *in the clean geometry*. t-SNE has no transform in
scikit-learn, so robustviz uses openTSNE, whose embeddings place new points by optimising
them against the fixed clean map.

Every map comes with its trustworthiness (scikit-learn, 5 neighbours): 1 means the points'
nearest neighbours in the map were also near each other in feature space; a map far below
1 invents structure. It is computed on at most ``TRUST_SAMPLE`` clean points (a seeded
subset) because it needs all pairwise distances.

Results are cached in memory, keyed by a hash of the inputs, the method, the seed and the
options: a second identical call returns the same ``Projection`` object at once, and a call
with the same clean features but new adversarial ones reuses the fitted map.

Example:
    >>> proj = project(feats.clean, feats.adversarial, method="pca")  # doctest: +SKIP
    >>> proj.clean.shape, round(proj.trustworthiness, 2)  # doctest: +SKIP
    ((1000, 2), 0.93)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._checks import unknown_name_error

PROJECTION_METHODS = ("umap", "tsne", "pca", "lda")
TRUST_SAMPLE = 1000  # points used for the trustworthiness score
TRUST_NEIGHBOURS = 5
CACHE_SIZE = 64  # fitted maps and projections kept in memory (oldest dropped first)

_FITTED: OrderedDict[str, _FittedMap] = OrderedDict()
_PROJECTED: OrderedDict[str, Projection] = OrderedDict()


@dataclass(frozen=True)
class Projection:
    """A 2-D map of clean features and the adversarial features placed into it.

    Attributes:
        clean: ``[N, 2]`` coordinates of the clean features.
        adversarial: ``[M, 2]`` coordinates of the adversarial features, or ``None``.
        method: ``"umap"``, ``"tsne"``, ``"pca"`` or ``"lda"``.
        trustworthiness: of the clean map, in [0, 1] (module docstring).
        axis_labels: names of the two axes (``"PC 1"``, ``"UMAP 1"``, ...).
        note: how the adversarial points were placed, for figure titles.
    """

    clean: np.ndarray
    adversarial: np.ndarray | None
    method: str
    trustworthiness: float
    axis_labels: tuple[str, str]
    note: str

    def __repr__(self) -> str:
        placed = "None" if self.adversarial is None else f"[{self.adversarial.shape[0]}, 2]"
        return (f"Projection({self.note}: clean=[{self.clean.shape[0]}, 2], adversarial={placed}, "
                f"trustworthiness={self.trustworthiness:.3f})")


@dataclass
class _FittedMap:
    clean: np.ndarray
    transform: Callable[[np.ndarray], np.ndarray]
    trustworthiness: float
    axis_labels: tuple[str, str]
    note: str


def project(
    clean,
    adversarial=None,
    method: str = "umap",
    seed: int = 0,
    labels=None,
    n_neighbors: int = 15,
    cache_dir: str | Path | None = None,
) -> Projection:
    """Fit a 2-D map on ``clean`` features and place ``adversarial`` features into it.

    Args:
        clean: ``[N, d]`` features (tensor or array), or a ``Features`` from ``extract``
            (then its adversarial features and labels are used too).
        adversarial: ``[M, d]`` features to place into the clean map, or ``None``. Rows
            identical to the clean row with the same index (paired inputs that the attack
            did not move) keep exactly that row's coordinates.
        method: one of ``PROJECTION_METHODS``. ``"lda"`` needs ``labels`` and >= 3 classes.
        seed: random state of UMAP / t-SNE and of the trustworthiness subset.
        labels: ``[N]`` class labels (only LDA uses them).
        n_neighbors: UMAP's neighbourhood size (t-SNE uses perplexity ``n_neighbors * 2``).
        cache_dir: if given, projections are also stored there as ``.npz`` files and reloaded
            across sessions (fitted maps are only kept in memory).

    Returns:
        a ``Projection`` (``float32`` coordinates).

    Raises:
        ValueError: unknown ``method``, fewer than 2 feature dimensions or 4 points, LDA
            without labels or with 2 classes, shapes that do not match.

    Example:
        >>> proj = project(torch.randn(100, 16), method="pca")
        >>> proj.clean.shape
        (100, 2)
    """
    if hasattr(clean, "clean") and hasattr(clean, "labels"):  # a Features object
        feats = clean
        clean, labels = feats.clean, feats.labels if labels is None else labels
        adversarial = feats.adversarial if adversarial is None else adversarial
    if method not in PROJECTION_METHODS:
        raise unknown_name_error("projection method", method, PROJECTION_METHODS)
    clean, adversarial = _as_array(clean, "clean"), _as_array(adversarial, "adversarial")
    labels = None if labels is None else np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    _check_shapes(clean, adversarial, labels)

    fit_key = _hash(clean, labels if method == "lda" else None, method, seed, n_neighbors)
    key = fit_key + _hash(adversarial)
    if key in _PROJECTED:
        _PROJECTED.move_to_end(key)
        return _PROJECTED[key]
    result = _load(cache_dir, key, method)
    if result is None:
        fitted = _fitted_map(fit_key, clean, labels, method, seed, n_neighbors)
        placed = None if adversarial is None else _place(fitted, clean, adversarial)
        result = Projection(fitted.clean, placed, method, fitted.trustworthiness, fitted.axis_labels, fitted.note)
        _save(cache_dir, key, result)
    _remember(_PROJECTED, key, result)
    return result


def clear_projection_cache() -> None:
    """Forget every cached map and projection (memory only; ``cache_dir`` files stay)."""
    _FITTED.clear()
    _PROJECTED.clear()


def map_trustworthiness(features: np.ndarray, coords: np.ndarray, seed: int = 0) -> float:
    """scikit-learn's trustworthiness of ``coords`` ``[N, 2]`` for ``features`` ``[N, d]``.

    Uses a seeded subset of at most ``TRUST_SAMPLE`` points and ``TRUST_NEIGHBOURS``
    neighbours (fewer for tiny inputs).

    Example:
        >>> x = np.random.default_rng(0).normal(size=(50, 2))
        >>> map_trustworthiness(np.c_[x, np.zeros(50)], x)
        1.0
    """
    from sklearn.manifold import trustworthiness

    n = features.shape[0]
    if n > TRUST_SAMPLE:
        subset = np.random.default_rng(seed).choice(n, TRUST_SAMPLE, replace=False)
        features, coords, n = features[subset], coords[subset], TRUST_SAMPLE
    neighbours = min(TRUST_NEIGHBOURS, (n - 1) // 2)
    return float(trustworthiness(features, coords, n_neighbors=max(neighbours, 1)))


# ---- the four maps ---------------------------------------------------------------------------


def _fit_pca(clean, labels, seed, n_neighbors):
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(clean)
    explained = 100 * pca.explained_variance_ratio_.sum()
    return pca.transform(clean), pca.transform, ("PC 1", "PC 2"), f"PCA ({explained:.0f}% variance)"


def _fit_lda(clean, labels, seed, n_neighbors):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    if labels is None:
        raise ValueError("method='lda' needs labels= (LDA finds the axes that best separate the classes)")
    if len(np.unique(labels)) < 3:
        raise ValueError("LDA gives at most (classes - 1) axes; with 2 classes use method='pca'")
    lda = LinearDiscriminantAnalysis(n_components=2).fit(clean, labels)
    return lda.transform(clean), lda.transform, ("LD 1", "LD 2"), "LDA"


def _fit_umap(clean, labels, seed, n_neighbors):
    try:
        import umap  # imported here: numba compiles it on first use (tens of seconds)
    except ImportError as err:  # an extra (robustviz[viz]); Colab has it
        raise ImportError("method='umap' needs the umap-learn package: pip install umap-learn "
                          "(or pip install -e \".[viz]\"); method='pca' needs nothing more") from err

    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(clean) - 1), random_state=seed, n_jobs=1)
    coords = reducer.fit_transform(clean)
    return coords, reducer.transform, ("UMAP 1", "UMAP 2"), "UMAP"


def _fit_tsne(clean, labels, seed, n_neighbors):
    try:
        from openTSNE import TSNE
    except ImportError as err:  # an extra (robustviz[viz])
        raise ImportError("method='tsne' needs the openTSNE package: pip install openTSNE "
                          "(or pip install -e \".[viz]\"); method='pca' needs nothing more") from err

    perplexity = min(2 * n_neighbors, (len(clean) - 1) / 3)
    embedding = TSNE(perplexity=perplexity, random_state=seed, n_jobs=1).fit(clean)
    return np.asarray(embedding), lambda x: np.asarray(embedding.transform(x)), ("t-SNE 1", "t-SNE 2"), \
        "t-SNE (openTSNE)"


_FITTERS = {"pca": _fit_pca, "lda": _fit_lda, "umap": _fit_umap, "tsne": _fit_tsne}


# ---- helpers ---------------------------------------------------------------------------------


def _fitted_map(key, clean, labels, method, seed, n_neighbors) -> _FittedMap:
    if key in _FITTED:
        _FITTED.move_to_end(key)
        return _FITTED[key]
    coords, transform, axis_labels, note = _FITTERS[method](clean, labels, seed, n_neighbors)
    coords = np.asarray(coords, dtype=np.float32)
    fitted = _FittedMap(coords, transform, map_trustworthiness(clean, coords, seed), axis_labels, note)
    _remember(_FITTED, key, fitted)
    return fitted


def _place(fitted: _FittedMap, clean: np.ndarray, adversarial: np.ndarray) -> np.ndarray:
    """Adversarial coordinates; paired rows the attack left unchanged keep their clean coordinates."""
    placed = np.asarray(fitted.transform(adversarial), dtype=np.float32)
    if adversarial.shape == clean.shape:
        unmoved = (adversarial == clean).all(axis=1)
        placed[unmoved] = fitted.clean[unmoved]
    return placed


def _as_array(values, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} features must be [N, d], got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_shapes(clean, adversarial, labels) -> None:
    if clean.shape[1] < 2:
        raise ValueError(f"a 2-D map needs features with at least 2 dimensions, got {clean.shape[1]}")
    if clean.shape[0] < 4:
        raise ValueError(f"need at least 4 clean points for a map, got {clean.shape[0]}")
    if adversarial is not None and adversarial.shape[1] != clean.shape[1]:
        raise ValueError(f"adversarial features have {adversarial.shape[1]} dimensions, clean {clean.shape[1]}")
    if labels is not None and labels.shape != (clean.shape[0],):
        raise ValueError(f"labels must be [N] = [{clean.shape[0]}], got {labels.shape}")


def _hash(*parts) -> str:
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.shape}{part.dtype}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:20]


def _remember(cache: OrderedDict, key: str, value) -> None:
    cache[key] = value
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)


def _load(cache_dir, key: str, method: str) -> Projection | None:
    path = None if cache_dir is None else Path(cache_dir) / f"{method}-{key}.npz"
    if path is None or not path.exists():
        return None
    with np.load(path) as f:
        adversarial = f["adversarial"] if f["has_adversarial"] else None
        return Projection(f["clean"], adversarial, method, float(f["trustworthiness"]),
                          tuple(f["axis_labels"].tolist()), str(f["note"]))


def _save(cache_dir, key: str, result: Projection) -> None:
    if cache_dir is None:
        return
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    adversarial = result.adversarial if result.adversarial is not None else np.zeros((0, 2), np.float32)
    np.savez(Path(cache_dir) / f"{result.method}-{key}.npz", clean=result.clean, adversarial=adversarial,
             has_adversarial=result.adversarial is not None, trustworthiness=result.trustworthiness,
             axis_labels=np.array(result.axis_labels), note=np.array(result.note))
