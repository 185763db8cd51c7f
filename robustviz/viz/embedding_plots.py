"""Where the attack moves points: 2-D maps and direct 2-D/3-D plots of the features.

Both figures use the same visual language: clean points are dots coloured by their true
class, adversarial copies are crosses in the same colour, a grey arrow joins each clean point
to its adversarial copy, and every *misclassified* point (clean or adversarial) gets a black
ring. Prototypes and cluster centres are large stars with a black edge.

Example:
    >>> feats = extract(model, bundle, attack="pgd-20", eps=0.3, n=1000)  # doctest: +SKIP
    >>> plot_embedding(feats, method="pca").savefig("pca.png")  # doctest: +SKIP
    >>> plot_feature_space(extract(drp_2d_model, bundle, attack="fgsm"), model=drp_2d_model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import artist
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from torch import nn

from ..geometry import centre_rule
from .extraction import Features
from .projection import Projection, project

# A transparent fill rather than "none": Agg then stamps the ring (one marker image copied to
# every point), which is several times faster than drawing thousands of unfilled paths.
RING = dict(s=60, facecolors=(0, 0, 0, 0), edgecolors="black", linewidths=0.8)


@dataclass
class PointArtists:
    """The artists of one point cloud, kept so explorers can move them without redrawing."""

    clean: object
    adversarial: object
    misclassified: object
    arrows: object | None


def class_colours(labels) -> np.ndarray:
    """One matplotlib colour (``"C0"``..``"C9"``, cycling) per label ``[N]``."""
    return np.array([f"C{int(k) % 10}" for k in np.asarray(labels)])


def plot_embedding(
    features: Features,
    method: str = "umap",
    projection: Projection | None = None,
    classes: Sequence[str] | None = None,
    max_arrows: int = 300,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """A 2-D map of the clean features with the adversarial features placed into it.

    Args:
        features: from ``extract`` (with or without an attack).
        method: the projection (``robustviz.viz.PROJECTION_METHODS``), fitted on the clean
            features only; ignored when ``projection`` is given.
        projection: a precomputed ``project(features, ...)`` result.
        classes: class names for the legend (default ``"class k"``).
        max_arrows: arrows drawn for the first ``max_arrows`` points (all points are drawn).
        seed: the projection's seed.
        title: the figure title (default: the model layer and attack).

    Returns:
        a ``Figure`` with one axes: clean and adversarial scatters, misclassified rings,
        arrows, and the map's trustworthiness in the axes title.
    """
    projection = projection or project(features, method=method, seed=seed)
    fig = Figure(figsize=(6.4, 5.4), layout="constrained")
    ax = fig.add_subplot()
    draw_points(ax, projection.clean, projection.adversarial, features, max_arrows)
    ax.set_xlabel(projection.axis_labels[0])
    ax.set_ylabel(projection.axis_labels[1])
    ax.set_title(embedding_title(projection), fontsize="medium")
    fig.suptitle(title or _describe(features))
    add_class_legend(fig, ax, features.labels, classes, features.adversarial is not None)
    return fig


def plot_feature_space(
    features: Features,
    model: nn.Module | None = None,
    centres: torch.Tensor | None = None,
    centre_labels: torch.Tensor | None = None,
    normalise: bool | None = None,
    classes: Sequence[str] | None = None,
    max_arrows: int = 300,
    title: str | None = None,
) -> Figure:
    """The features themselves, for ``feat_dim`` 2 or 3, with the model's prototypes or centres.

    Normalised 3-D features lie on the unit sphere; they are drawn as a map of it (longitude
    and latitude, ``sphere_coordinates``), where no point hides behind another and no arrow
    cuts through the sphere. Unnormalised 3-D features get a 3-D scatter.

    Args:
        features: from ``extract``; ``features.dim`` must be 2 or 3.
        model: a prototype (DRP) or cluster (ClusTR) model whose centres to draw
            (``feature_centres``); or pass ``centres`` ``[P, d]`` and ``centre_labels`` ``[P]``.
        normalise: draw ``z / ||z||`` on the unit circle (sphere in 3-D), the space a
            prototype rule compares in. Default: True for prototype heads, else False.
        classes, max_arrows, title: as in ``plot_embedding``.

    Raises:
        ValueError: if the features are not 2- or 3-dimensional (use ``plot_embedding``).
    """
    if features.dim not in (2, 3):
        raise ValueError(f"direct feature plots need feat_dim 2 or 3, got {features.dim}; "
                         "use plot_embedding(features, method='umap'|'pca'|...) for a 2-D map")
    if model is not None and centres is None:
        centres, centre_labels, model_normalises = feature_centres(model)
        normalise = model_normalises if normalise is None else normalise
    normalise = bool(normalise)
    on_sphere = normalise and features.dim == 3
    clean, adversarial = as_plotted(features.clean, normalise), as_plotted(features.adversarial, normalise)
    if on_sphere:
        clean, adversarial = sphere_coordinates(clean), sphere_coordinates(adversarial)
    fig = Figure(figsize=(7.4, 4.6) if on_sphere else (6.4, 5.6), layout="constrained")
    ax = fig.add_subplot(projection="3d" if features.dim == 3 and not on_sphere else None)
    if on_sphere:
        label_sphere_map(ax)
    draw_points(ax, clean, adversarial, features, max_arrows)
    if on_sphere:
        ax.set_xlim(-180, 180)  # the scatter may have widened them
        ax.set_ylim(-90, 90)
    elif normalise:
        draw_unit_sphere(ax, features.dim)
    if centres is not None:
        points = as_plotted(centres, normalise)
        draw_centres(ax, sphere_coordinates(points) if on_sphere else points, centre_labels)
    if not on_sphere:
        _label_axes(ax, features.dim, "z / ||z||" if normalise else "z")
    fig.suptitle(title or _describe(features))
    add_class_legend(fig, ax, features.labels, classes, features.adversarial is not None, centres is not None)
    return fig


# ---- drawing blocks shared with the explorers ------------------------------------------------


def draw_points(ax: Axes, clean: np.ndarray, adversarial: np.ndarray | None, features: Features,
                max_arrows: int = 300) -> PointArtists:
    """Scatter clean dots, adversarial crosses, misclassified rings and clean-to-adversarial arrows.

    ``clean`` and ``adversarial`` are ``[N, 2]`` or ``[N, 3]`` coordinates of the rows of
    ``features`` (its labels and predictions colour and ring them).
    """
    colours = class_colours(features.labels)
    clean_artist = _scatter(ax, clean, c=colours, s=10, zorder=2)
    adversarial_artist = _scatter(ax, adversarial if adversarial is not None else clean[:0],
                                  c=colours if adversarial is not None else None, s=18, marker="x",
                                  linewidths=0.8, zorder=3)
    rings = _scatter(ax, misclassified_points(clean, adversarial, features), zorder=4, **RING)
    arrows = draw_arrows(ax, clean[:max_arrows], adversarial[:max_arrows]) if adversarial is not None else None
    return PointArtists(clean_artist, adversarial_artist, rings, arrows)


class StampedScatter(PathCollection):
    """A 2-D scatter with a colour per point that Agg draws nearly as fast as a one-colour scatter.

    Agg draws a one-colour scatter by rendering its marker once and stamping it at every point
    (``draw_markers``); with a colour per point it renders every point's path on its own, which
    is several times slower at thousands of points. This scatter draws the points of each
    colour in turn as a one-colour scatter. Points of different colours then overlap colour by
    colour instead of row by row; everything else is ``ax.scatter``'s collection
    (``set_offsets``, ``set_color``, ``get_offsets`` work as usual). Made by ``stamped``.
    """

    @artist.allow_rasterization
    def draw(self, renderer) -> None:
        offsets, faces, edges = self.get_offsets(), self._facecolors, self._edgecolors
        per_point = [colours for colours in (faces, edges)
                     if not isinstance(colours, str) and len(colours) == len(offsets) > 1]
        if not per_point:
            super().draw(renderer)
            return
        _, colour_of_row = np.unique(np.hstack(per_point), axis=0, return_inverse=True)
        colour_of_row = colour_of_row.ravel()

        def colour_of(colours, rows):  # the one colour of these rows
            return colours[rows][:1] if any(colours is array for array in per_point) else colours

        try:
            for colour in range(colour_of_row.max() + 1):
                rows = colour_of_row == colour
                # the private fields, not the setters: a setter would mark the figure stale mid-draw
                self._offsets = offsets[rows]
                self._facecolors, self._edgecolors = colour_of(faces, rows), colour_of(edges, rows)
                super().draw(renderer)
        finally:
            self._offsets, self._facecolors, self._edgecolors = offsets, faces, edges


def stamped(scatter: PathCollection) -> PathCollection:
    """``scatter`` (from ``ax.scatter`` on 2-D axes) drawn as a ``StampedScatter`` from now on.

    Example:
        >>> points = stamped(ax.scatter(x, y, c=colours, s=10))  # doctest: +SKIP
    """
    if type(scatter) is PathCollection:
        scatter.__class__ = StampedScatter  # as mplot3d turns 2-D collections into 3-D ones
    return scatter


def draw_arrows(ax: Axes, start: np.ndarray, end: np.ndarray):
    """Grey arrows from ``start`` to ``end`` (``[N, 2]`` or ``[N, 3]``); returns the quiver.

    On a map of the sphere (``sphere_coordinates``) an arrow that crosses the +-180 degree
    seam is not drawn (it would run across the whole map).
    """
    delta = end - start
    if getattr(ax, "sphere_map", False):
        delta = np.where(np.abs(delta[:, :1]) > 180, 0.0, delta)
    if start.shape[1] == 3:
        return ax.quiver(*start.T, *delta.T, color="0.55", linewidth=0.5, arrow_length_ratio=0.2)
    return ax.quiver(*start.T, *delta.T, angles="xy", scale_units="xy", scale=1, color="0.55",
                     width=0.002, headwidth=4, zorder=1)


def misclassified_points(clean: np.ndarray, adversarial: np.ndarray | None, features: Features,
                         shown: np.ndarray | None = None) -> np.ndarray:
    """Coordinates of every misclassified clean point and adversarial point, stacked ``[M, 2|3]``.

    ``shown``: a boolean mask of the rows to consider (default: all of them).
    """
    shown = np.ones(len(clean), dtype=bool) if shown is None else shown
    labels = features.labels.numpy()
    wrong = [clean[shown & (features.pred_clean.numpy() != labels)]]
    if adversarial is not None and features.pred_adv is not None:
        wrong.append(adversarial[shown & (features.pred_adv.numpy() != labels)])
    return np.concatenate(wrong)


def draw_centres(ax: Axes, centres: np.ndarray, centre_labels) -> object:
    """Prototypes / cluster centres as large stars in their class colour."""
    return _scatter(ax, centres, c=class_colours(centre_labels), marker="*", s=260, edgecolors="black",
                    linewidths=1.0, zorder=5)


def draw_unit_sphere(ax: Axes, dim: int) -> None:
    """The unit circle (2-D, a patch) or a light unit-sphere wireframe (3-D)."""
    if dim == 2:
        ax.add_patch(Circle((0, 0), 1.0, fill=False, ls="--", color="0.4", lw=0.8))
        ax.set_aspect("equal", adjustable="box")
        return
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.7", lw=0.3)


def sphere_coordinates(points: np.ndarray | None) -> np.ndarray | None:
    """Unit vectors ``[N, 3]`` as ``[N, 2]`` (longitude, latitude) in degrees: the sphere unrolled
    onto a plane (equirectangular), so that all of it is visible at once.

    Example:
        >>> sphere_coordinates(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])).round(1).tolist()
        [[0.0, 0.0], [0.0, 90.0]]
    """
    if points is None:
        return None
    longitude = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    latitude = np.degrees(np.arcsin(np.clip(points[:, 2], -1.0, 1.0)))
    return np.stack([longitude, latitude], axis=1)


def label_sphere_map(ax: Axes) -> None:
    """Axes of a ``sphere_coordinates`` map: the whole sphere, degrees, an equal-angle grid."""
    ax.sphere_map = True  # draw_arrows skips arrows across the seam
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_xticks(range(-180, 181, 60))
    ax.set_yticks(range(-90, 91, 30))
    ax.set_xlabel("longitude of z / ||z|| (degrees)")
    ax.set_ylabel("latitude (degrees)")
    ax.grid(alpha=0.3)


def feature_centres(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(centres [P, d], centre_labels [P], normalised)`` of a model whose head has a centre rule.

    ``normalised`` is True when the rule compares ``z / ||z||`` with the centres (prototypes).
    Raises ``ValueError`` for a model without one (``robustviz.geometry.centre_rule``).
    """
    rule = centre_rule(model)
    if rule is None:
        raise ValueError("the model's head has no centre rule (prototypes or cluster centres); "
                         "pass centres= and centre_labels= to draw your own")
    return rule.centres.cpu(), rule.labels.cpu(), rule.space == "unit features"


def as_plotted(values, normalise: bool) -> np.ndarray | None:
    """A tensor or array as a float numpy array, divided by its row norms if ``normalise``."""
    if values is None:
        return None
    array = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    array = array.astype(np.float32)
    if normalise:
        array = array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
    return array


def embedding_title(projection: Projection) -> str:
    """``"<method> of clean features, trustworthiness 0.95"``, shown by every embedding plot."""
    return f"{projection.note} of clean features, trustworthiness {projection.trustworthiness:.2f}"


def add_class_legend(fig: Figure, ax: Axes, labels, classes: Sequence[str] | None, adversarial: bool,
                     centres: bool = False) -> None:
    """A legend outside the axes: one entry per class present, plus the marker meanings."""
    from matplotlib.lines import Line2D

    present = sorted(set(np.asarray(labels).tolist()))
    handles = [Line2D([], [], ls="", marker="o", color=f"C{k % 10}", label=_class_name(classes, k))
               for k in present]
    if adversarial:
        handles.append(Line2D([], [], ls="", marker="x", color="k", label="adversarial"))
    handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="k", label="misclassified"))
    if centres:
        handles.append(Line2D([], [], ls="", marker="*", ms=12, color="0.5", mec="k", label="prototype / centre"))
    fig.legend(handles=handles, loc="outside right center", fontsize="small")


def _scatter(ax: Axes, points: np.ndarray, **style):
    if getattr(ax, "name", "") == "3d":
        return ax.scatter(points[:, 0], points[:, 1], points[:, 2], **style)
    return ax.scatter(points[:, 0], points[:, 1], **style)


def _label_axes(ax: Axes, dim: int, symbol: str) -> None:
    ax.set_xlabel(f"{symbol} [0]")
    ax.set_ylabel(f"{symbol} [1]")
    if dim == 3:
        ax.set_zlabel(f"{symbol} [2]")


def _class_name(classes: Sequence[str] | None, k: int) -> str:
    return str(classes[k]) if classes is not None and k < len(classes) else f"class {k}"


def _describe(features: Features) -> str:
    layer = "features" if features.layer == "features" else f"layer {features.layer}"
    if features.attack is None:
        return f"{layer} (clean)"
    eps = "" if features.eps is None else f", eps = {features.eps:.3g}"
    return f"{layer}: clean and {features.attack}{eps}"
