"""Prototype geometry: how well separated a model's class prototypes (or centres) are.

Any ``K`` directions have a largest pairwise cosine of at least ``-1/(K-1)`` (the regular
simplex reaches it), so the best possible *smallest* pairwise angle is
``arccos(-1/(K-1))``: 120 degrees for 3 classes, 96.4 degrees for 10. The panel shows the
pairwise angles as a heatmap, the smallest and mean angle against that optimum, and the
prototypes' norms (equal norms are what make ``argmax <z, p_c>`` a nearest-prototype rule).

Example:
    >>> from robustviz.methods.drp.head import make_prototypes
    >>> fig = plot_prototype_geometry(make_prototypes("simplex", 4, 3))
    >>> [ax.get_title() for ax in fig.axes[:3]]
    ['pairwise angles (degrees)', 'angles vs optimum', 'norms']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..geometry import pairwise_cosines, simplex_bound


def prototype_angles(prototypes: torch.Tensor) -> dict:
    """Pairwise angles of ``K`` vectors ``[K, d]`` and their summary, in degrees.

    Returns:
        ``angles`` (``[K, K]`` numpy, 0 on the diagonal), ``min_angle``, ``mean_angle``
        (over the pairs ``i < j``) and ``optimal_angle`` ``= arccos(-1/(K-1))``.

    Example:
        >>> summary = prototype_angles(torch.eye(3))
        >>> summary["min_angle"], round(summary["optimal_angle"], 1)
        (90.0, 120.0)
    """
    cosines = pairwise_cosines(prototypes.detach().cpu().double()).clamp(-1, 1).numpy()
    angles = np.degrees(np.arccos(cosines))
    np.fill_diagonal(angles, 0.0)
    pairs = angles[np.triu_indices(len(angles), k=1)]
    return {
        "angles": angles,
        "min_angle": float(pairs.min()),
        "mean_angle": float(pairs.mean()),
        "optimal_angle": math.degrees(math.acos(simplex_bound(len(angles)))),
    }


def plot_prototype_geometry(prototypes: torch.Tensor | nn.Module, classes: Sequence[str] | None = None) -> Figure:
    """Three panels: pairwise-angle heatmap, smallest/mean angle vs the optimum, norms.

    Args:
        prototypes: ``[K, d]`` vectors, or a model whose head has ``prototypes`` (DRP) or
            ``centres`` (ClusTR; then every centre is one row, labelled by its class).
        classes: names for the heatmap ticks (default: the row index or class).

    Returns:
        a ``Figure`` with the heatmap (and its colour bar), the angle bars with a dashed
        optimum line, and the norm bars.
    """
    vectors, names = _vectors_and_names(prototypes, classes)
    summary = prototype_angles(vectors)
    fig = Figure(figsize=(12.0, 3.8), layout="constrained")
    heat_ax, angle_ax, norm_ax = fig.subplots(1, 3, width_ratios=[1.3, 0.8, 1.0])
    image = heat_ax.imshow(summary["angles"], cmap="viridis", vmin=0, vmax=180)
    ticks = np.arange(len(names))
    heat_ax.set_xticks(ticks, names, rotation=90, fontsize="x-small")
    heat_ax.set_yticks(ticks, names, fontsize="x-small")
    heat_ax.set_title("pairwise angles (degrees)")
    fig.colorbar(image, ax=heat_ax, shrink=0.8)

    angle_ax.bar(["smallest", "mean"], [summary["min_angle"], summary["mean_angle"]], color=["C3", "C0"])
    angle_ax.axhline(summary["optimal_angle"], ls="--", color="k",
                     label=f"optimum arccos(-1/(K-1)) = {summary['optimal_angle']:.1f}")
    angle_ax.set_ylim(0, 185)
    angle_ax.set_ylabel("degrees")
    angle_ax.legend(fontsize="x-small", loc="lower center")
    angle_ax.set_title("angles vs optimum")

    norm_ax.bar(ticks, vectors.norm(dim=1).numpy(), color=[f"C{i % 10}" for i in ticks])
    norm_ax.set_xticks(ticks, names, rotation=90, fontsize="x-small")
    norm_ax.set_ylabel("L2 norm")
    norm_ax.set_title("norms")
    return fig


def _vectors_and_names(prototypes, classes) -> tuple[torch.Tensor, list[str]]:
    if isinstance(prototypes, nn.Module):
        head = getattr(prototypes, "head", prototypes)
        if hasattr(head, "prototypes"):
            vectors = head.prototypes
            labels = list(range(vectors.shape[0]))
        elif hasattr(head, "centres"):
            vectors, labels = head.centres, head.centre_labels.tolist()
        else:
            raise ValueError("the model's head has neither 'prototypes' (DRP) nor 'centres' (ClusTR)")
    else:
        vectors = prototypes
        labels = list(range(vectors.shape[0]))
    vectors = vectors.detach().cpu().float()
    if vectors.dim() != 2 or vectors.shape[0] < 2:
        raise ValueError(f"need at least 2 prototypes as a [K, d] tensor, got shape {tuple(vectors.shape)}")
    names = [str(classes[k]) if classes is not None and k < len(classes) else str(k) for k in labels]
    return vectors, names
