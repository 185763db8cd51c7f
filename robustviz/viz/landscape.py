"""The loss around an input: along the FGSM direction, and on a 2-D slice.

FGSM assumes the loss grows (roughly linearly) along ``sign(grad)``. For a robust model it
does, smoothly; for a gradient-masked model the curve is flat, bumpy or even falls, so the
step FGSM takes is a poor one (``robustviz.evaluate.diagnose`` counts such samples).

The 2-D landscape plots ``loss(x + a * eps * sign(grad) + b * eps * r)`` with ``r`` a random
sign vector (seeded). Both directions are sign vectors, so the L-inf ball of radius eps is the
diamond ``|a| + |b| <= 1`` in these coordinates (drawn dashed). Images are clipped to [0, 1].

Example:
    >>> plot_loss_along_fgsm(model, x[:50], y[:50], eps=0.3).savefig("fgsm_line.png")  # doctest: +SKIP
    >>> plot_loss_landscape(model, x[0], y[0], eps=0.3).savefig("landscape.png")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..attacks.core import eval_mode, input_gradient, prepare_inputs
from ..attacks.losses import cross_entropy
from ..evaluate.diagnose import loss_along_fgsm


def plot_loss_along_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, points: int = 21,
                         span: float = 2.0, max_lines: int = 20, title: str | None = None) -> Figure:
    """One thin line per sample (the first ``max_lines``), the mean in black, a dashed line at eps.

    Returns a ``Figure`` with one axes (x: step size ``t``, y: cross-entropy).
    """
    steps, curves = (values.cpu().numpy() for values in loss_along_fgsm(model, x, y, eps, points, span))
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for curve in curves[:max_lines]:
        ax.plot(steps, curve, color="C0", alpha=0.35, lw=0.8)
    ax.plot(steps, curves.mean(axis=0), color="k", lw=2, label=f"mean of {len(curves)} samples")
    ax.axvline(eps, ls="--", color="C3", label=f"eps = {eps:.3g}")
    ax.set_xlabel("step t along sign(grad) (L-inf, [0, 1] pixel units)")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize="small")
    ax.set_title(title or "Loss along the FGSM direction")
    return fig


def loss_landscape(model: nn.Module, x: torch.Tensor, y: torch.Tensor | int, eps: float, resolution: int = 21,
                   span: float = 2.0, seed: int = 0, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy on a ``resolution x resolution`` grid around one input (module docstring).

    Args:
        x: one input without the batch dimension: ``[C, H, W]`` (``[D]`` for the toys). y: its label.
        eps: the budget; the grid spans ``[-span, span]`` in units of eps on both axes.
        seed: seed of the random sign direction.

    Returns:
        ``(coords [resolution], loss [resolution, resolution])``; ``loss[i, j]`` is at
        ``b = coords[i]`` (random direction), ``a = coords[j]`` (gradient sign).
    """
    x, y, eps = prepare_inputs(model, x[None], torch.as_tensor([int(y)]), eps)
    coords = np.linspace(-span, span, resolution)
    generator = torch.Generator().manual_seed(seed)
    random_sign = (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(x)
    with eval_mode(model), torch.no_grad():
        grad_sign = input_gradient(model, x, y, cross_entropy)[0].sign()
        b, a = np.meshgrid(coords, coords, indexing="ij")
        steps = torch.tensor(np.stack([a.ravel(), b.ravel()], 1), dtype=x.dtype, device=x.device) * eps
        shape = (-1,) + (1,) * (x.dim() - 1)
        losses = []
        for chunk in steps.split(batch_size):
            batch = (x + chunk[:, 0].view(shape) * grad_sign + chunk[:, 1].view(shape) * random_sign).clamp(0, 1)
            losses.append(cross_entropy(model(batch), y.expand(len(batch))))
    return coords, torch.cat(losses).view(resolution, resolution).cpu().numpy()


def plot_loss_landscape(model: nn.Module, x: torch.Tensor, y: torch.Tensor | int, eps: float,
                        resolution: int = 21, span: float = 2.0, seed: int = 0, title: str | None = None) -> Figure:
    """Filled contours of ``loss_landscape`` with a colour bar, the input (dot) and the eps-ball (diamond)."""
    coords, loss = loss_landscape(model, x, y, eps, resolution, span, seed)
    fig = Figure(figsize=(5.6, 4.6), layout="constrained")
    ax = fig.add_subplot()
    contours = ax.contourf(coords, coords, loss, levels=20, cmap="magma")
    fig.colorbar(contours, ax=ax, label="cross-entropy")
    ax.plot([1, 0, -1, 0, 1], [0, 1, 0, -1, 0], ls="--", color="w", lw=1, label="L-inf ball of radius eps")
    ax.plot([0], [0], "o", color="C2", label="input")
    ax.set_xlabel("a: step along sign(grad), in units of eps")
    ax.set_ylabel("b: step along a random sign vector, in units of eps")
    ax.set_aspect("equal")
    ax.legend(fontsize="x-small", loc="upper left")
    ax.set_title(title or "Loss landscape around one input")
    return fig


def plot_gradient_norms(widths, norms: dict[str, list[float]], floor: float = 1e-12) -> Figure:
    """Gradient norm against distance, log-log, one line per score view (e.g. from
    ``robustviz.methods.clustr.score_gradient_norms``); zeros are drawn at ``floor``.

    Example:
        >>> fig = plot_gradient_norms(widths, score_gradient_norms(model.head, widths))  # doctest: +SKIP
    """
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for name, values in norms.items():
        ax.plot(list(widths), [max(v, floor) for v in values], "o-", label=name)
    ax.set(xscale="log", yscale="log", xlabel="distance to the centre, d^2 / 2 sigma^2",
           ylabel=f"||gradient|| (0 drawn at {floor:g})")
    ax.legend()
    return fig
