"""GCE's picture: how flat is the wrong-class distribution?

Guided Complement Entropy (``robustviz.methods.gce.loss``) trains the *complement* distribution
``q_j = p_j / (1 - p_g)`` (the probabilities of the wrong classes, renormalised) to be flat.
The normalised complement entropy ``H(q) / log(K - 1)`` is 1 for a perfectly flat complement
and 0 when one wrong class takes all of it. Histograms over a test set show the difference
between a cross-entropy and a GCE model (README.md in this folder, "Evaluate it honestly"),
next to the true-class probability ``p_g``.

Example:
    >>> plot_complement_entropy({"ce": ce_model, "gce": gce_model}, x, y).savefig("gce.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ...attacks.core import eval_mode
from .loss import normalized_complement_entropy


@torch.no_grad()
def complement_statistics(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """``(p_true [N], normalised complement entropy [N])`` of the model's scores on ``x``.

    Needs at least 3 classes (with 2 the complement is a single class).
    """
    device = next(model.parameters()).device
    p_true, entropy = [], []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            scores = model(x[i: i + batch_size].to(device)).float()
            yb = y[i: i + batch_size].to(device)
            p_true.append(scores.softmax(dim=1).gather(1, yb[:, None]).squeeze(1).cpu())
            entropy.append(normalized_complement_entropy(scores, yb).cpu())
    return torch.cat(p_true).numpy(), torch.cat(entropy).numpy()


def plot_complement_entropy(models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                            bins: int = 30, title: str | None = None) -> Figure:
    """Histograms of ``p_true`` (left) and of the normalised complement entropy (right), one per model.

    Args:
        models: ``{name: model}``, e.g. ``{"ce": ..., "gce": ...}``.
        x, y: inputs in [0, 1] and labels (``K >= 3`` classes).

    Returns:
        a ``Figure`` with two axes, one step histogram per model on each.
    """
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    prob_ax, entropy_ax = fig.subplots(1, 2)
    edges = np.linspace(0, 1, bins + 1)
    for colour, (name, model) in enumerate(models.items()):
        p_true, entropy = complement_statistics(model, x, y)
        prob_ax.hist(p_true, bins=edges, histtype="step", lw=1.5, color=f"C{colour}", label=name)
        entropy_ax.hist(entropy, bins=edges, histtype="step", lw=1.5, color=f"C{colour}",
                        label=f"{name} (mean {entropy.mean():.2f})")
    prob_ax.set_xlabel("probability of the true class p_g")
    entropy_ax.set_xlabel("complement entropy H(q) / log(K - 1)   (1 = flat)")
    for ax in (prob_ax, entropy_ax):
        ax.set_ylabel("samples")
        ax.legend(fontsize="small")
    fig.suptitle(title or "True-class probability and complement entropy")
    return fig
