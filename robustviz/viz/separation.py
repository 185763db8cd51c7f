"""Class separation in feature space, clean against adversarial: four numbers and a histogram.

* **intra/inter ratio**: mean distance between two points of the same class divided by the
  mean distance between two points of different classes (smaller = tighter classes).
* **Fisher criterion**: between-class scatter over within-class scatter,
  ``sum_k n_k ||mu_k - mu||^2 / sum_i ||z_i - mu_{y_i}||^2`` (larger = better separated).
* **silhouette**: scikit-learn's silhouette score with the true labels, in [-1, 1].
* **margin**: per point, the signed distance to the decision boundary of the nearest-centre
  rule: ``min_j h_ij(z)`` over the other-class centres ``j``, with ``i`` the nearest centre
  of the *true* class and ``h_ij`` the distance to the bisector of ``mu_i`` and ``mu_j``
  (as in ``robustviz.evaluate.certificate``). Positive on the right side, negative past it.
  The centres are the model's prototypes (compared with ``z / ||z||``) or cluster centres;
  for other models the clean class means.

The adversarial numbers use the *same* centres and the true labels, so the histogram shows
how far the attack pushed each point towards (or past) the boundary.

Example:
    >>> feats = extract(model, bundle, attack="pgd-20", eps=0.3, n=1000)  # doctest: +SKIP
    >>> plot_separation(feats, model).savefig("separation.png")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..evaluate.certificate import model_centres
from ..geometry import squared_distances
from .extraction import Features

METRIC_NAMES = ("intra/inter ratio", "Fisher criterion", "silhouette", "mean margin")
PAIR_SAMPLE = 1000  # points used for the pairwise-distance metrics (seeded subset)


def class_means(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of each class present: ``(means [C, d], classes [C])``."""
    classes = torch.unique(y)
    return torch.stack([z[y == k].mean(dim=0) for k in classes]), classes


def margins(z: torch.Tensor, y: torch.Tensor, centres: torch.Tensor, centre_labels: torch.Tensor) -> torch.Tensor:
    """Signed distance ``[N]`` from each point to its nearest-centre decision boundary (module docstring).

    Example:
        >>> centres = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
        >>> margins(torch.tensor([[-0.5, 3.0], [-0.5, 3.0]]), torch.tensor([0, 1]), centres, torch.tensor([0, 1]))
        tensor([ 0.5000, -0.5000], dtype=torch.float64)
    """
    z, centres = z.double(), centres.double().to(z.device)
    centre_labels = centre_labels.to(z.device)
    d2 = squared_distances(z, centres)  # [N, P]
    own = centre_labels[None, :] == y[:, None]  # [N, P]
    if not own.any(dim=1).all():
        raise ValueError("some labels have no centre of their class")
    nearest_own = d2.masked_fill(~own, float("inf")).argmin(dim=1)  # i
    gap = (centres[nearest_own][:, None, :] - centres[None]).norm(dim=-1).clamp_min(1e-12)  # ||mu_i - mu_j||
    h = (d2 - d2.gather(1, nearest_own[:, None])) / (2 * gap)
    return h.masked_fill(own, float("inf")).min(dim=1).values


def separation_metrics(z: torch.Tensor, y: torch.Tensor, centres: torch.Tensor | None = None,
                       centre_labels: torch.Tensor | None = None, seed: int = 0) -> dict[str, float]:
    """The four numbers of the module docstring for features ``[N, d]`` and labels ``[N]``.

    ``centres`` default to the class means of ``z``. Pairwise distances and the silhouette
    use a seeded subset of at most ``PAIR_SAMPLE`` points.

    Example:
        >>> z = torch.tensor([[0.0, 0.0], [0.0, 0.2], [4.0, 0.0], [4.0, 0.2]])
        >>> m = separation_metrics(z, torch.tensor([0, 0, 1, 1]))
        >>> round(m["Fisher criterion"], 1), m["silhouette"] > 0.9
        (400.0, True)
    """
    from sklearn.metrics import silhouette_score

    z, y = z.double().cpu(), y.cpu()
    if centres is None:
        centres, centre_labels = class_means(z, y)
    sub = _subset(len(y), seed)
    zs, ys = z[sub], y[sub]
    distances = torch.cdist(zs, zs)
    same = ys[:, None] == ys[None, :]
    off_diagonal = ~torch.eye(len(ys), dtype=torch.bool)
    means, classes = class_means(z, y)
    within = sum(((z[y == k] - m) ** 2).sum() for m, k in zip(means, classes))
    between = sum((y == k).sum() * ((m - z.mean(dim=0)) ** 2).sum() for m, k in zip(means, classes))
    has_two_classes = 1 < len(torch.unique(ys)) < len(ys)
    return {
        "intra/inter ratio": float(distances[same & off_diagonal].mean() / distances[~same].mean()),
        "Fisher criterion": float(between / within.clamp_min(1e-12)),
        "silhouette": float(silhouette_score(zs.numpy(), ys.numpy())) if has_two_classes else float("nan"),
        "mean margin": float(margins(z, y, centres, centre_labels).mean()),
    }


def comparison_space(features: Features, model: nn.Module | None = None):
    """``(clean, adversarial, centres, centre_labels, space)`` in the space the model's rule compares.

    Prototype models compare ``z / ||z||`` with unit prototypes; cluster models ``z`` with
    the centres; for other models (or ``model=None``) the centres are the clean class means.
    """
    clean, adversarial = features.clean.double(), features.adversarial
    adversarial = None if adversarial is None else adversarial.double()
    try:
        centres, centre_labels, space = model_centres(model) if model is not None else (None, None, "features")
    except ValueError:
        centres, centre_labels, space = None, None, "features"
    if space == "unit features":
        clean, adversarial = _unit(clean), None if adversarial is None else _unit(adversarial)
    if centres is None:
        centres, centre_labels = class_means(clean, features.labels)
        space = "features (centres: clean class means)"
    return clean, adversarial, centres.cpu(), centre_labels.cpu(), space


def plot_separation(features: Features, model: nn.Module | None = None, bins: int = 40,
                    title: str | None = None, seed: int = 0) -> Figure:
    """A table of the separation metrics (clean | adversarial) and the margin histograms.

    Args:
        features: from ``extract`` (with an attack for the adversarial column).
        model: a prototype or cluster model, whose centres define the margins (optional).
        bins: histogram bins. title: figure title. seed: subset seed for the metrics.

    Returns:
        a ``Figure`` with the table (left) and the histograms (right, a dashed line at margin 0).
    """
    clean, adversarial, centres, centre_labels, space = comparison_space(features, model)
    y = features.labels
    columns = {"clean": (clean, separation_metrics(clean, y, centres, centre_labels, seed))}
    if adversarial is not None:
        columns["adversarial"] = (adversarial, separation_metrics(adversarial, y, centres, centre_labels, seed))
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    table_ax, hist_ax = fig.subplots(1, 2, width_ratios=[0.8, 1.2])
    _metrics_table(table_ax, {name: metrics for name, (_, metrics) in columns.items()})
    all_margins = {name: margins(z, y, centres, centre_labels).numpy() for name, (z, _) in columns.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(all_margins.values())), bins=bins)
    for colour, (name, values) in zip(("C0", "C3"), all_margins.items()):
        wrong = 100 * float((values < 0).mean())
        hist_ax.hist(values, bins=edges, alpha=0.55, color=colour, label=f"{name} ({wrong:.0f}% past the boundary)")
    hist_ax.axvline(0.0, ls="--", color="k", lw=1)
    hist_ax.set_xlabel(f"margin to the nearest other-class centre ({space})")
    hist_ax.set_ylabel("points")
    hist_ax.legend(fontsize="small")
    hist_ax.set_title("margin histogram")
    fig.suptitle(title or "Class separation, clean vs adversarial")
    return fig


def _metrics_table(ax, columns: dict[str, dict[str, float]]) -> None:
    ax.axis("off")
    cells = [[f"{metrics[name]:.3g}" for metrics in columns.values()] for name in METRIC_NAMES]
    table = ax.table(cellText=cells, rowLabels=list(METRIC_NAMES), colLabels=list(columns), loc="center")
    table.scale(1.0, 1.6)
    ax.set_title("separation metrics")


def _unit(z: torch.Tensor) -> torch.Tensor:
    return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _subset(n: int, seed: int) -> torch.Tensor:
    if n <= PAIR_SAMPLE:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:PAIR_SAMPLE]
