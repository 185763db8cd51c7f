"""Layer-wise divergence: how far an adversarial input drifts from its clean copy, layer by layer.

ADR's motivation (robustviz/methods/adr/README.md, first paragraph): a tiny input
perturbation is amplified as it travels up the network, so the representations of ``x`` and
``x_adv`` *diverge* with depth.
Per layer ``l`` the curve shows the mean relative distance

    mean_i ||h_l(x_i) - h_l(x_adv_i)||_2 / ||h_l(x_i)||_2

For a standard model it typically grows with depth; adversarial training (and ADR's
compactness terms) keep it low.

Example:
    >>> curve = layerwise_divergence(model, x, pgd(model, x, y, eps=0.3))  # doctest: +SKIP
    >>> plot_layer_divergence({"ce": curve, "pgd_at": curve_at}).savefig("divergence.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from torch import nn

from .extraction import multi_layer_outputs

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU)


def default_layers(model: nn.Module) -> list[str | None]:
    """The layers the curve visits: every activation module in ``model.body`` (or, if it has
    none, the body's direct children), then ``None`` (``model.features``) unless the last of
    those already is the features, then ``"head"`` (the class scores)."""
    body = getattr(model, "body", model)
    prefix = "body." if body is not model else ""
    leaves = [(name, module) for name, module in body.named_modules() if name and not list(module.children())]
    layers: list[str | None] = [prefix + name for name, module in leaves if isinstance(module, ACTIVATIONS)]
    if not layers:
        layers = [prefix + name for name, _ in body.named_children()]
    if not leaves or leaves[-1][0] != layers[-1].removeprefix(prefix):
        layers.append(None)
    if hasattr(model, "head"):
        layers.append("head")
    return layers


@torch.no_grad()
def layerwise_divergence(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                         layers: Sequence[str | None] | None = None, batch_size: int = 500) -> dict[str, float]:
    """Mean relative L2 distance between clean and adversarial outputs of each layer.

    Args:
        model: the network (eval mode is used). x, x_adv: ``[N, ...]`` paired inputs.
        layers: names from ``layer_names(model)`` (``None`` = ``model.features``);
            default ``default_layers(model)``.

    Returns:
        ``{layer name: divergence}`` in network order (``"features"`` for ``None``).
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_adv {tuple(x_adv.shape)} must have the same shape")
    layers = list(layers) if layers is not None else default_layers(model)
    clean = multi_layer_outputs(model, x, layers, batch_size)
    adversarial = multi_layer_outputs(model, x_adv, layers, batch_size)
    curve = {}
    for layer in layers:
        distance = (clean[layer] - adversarial[layer]).norm(dim=1)
        curve["features" if layer is None else layer] = float(
            (distance / clean[layer].norm(dim=1).clamp_min(1e-12)).mean())
    return curve


def plot_layer_divergence(curves: Mapping[str, Mapping[str, float]], title: str | None = None) -> Figure:
    """One line per model: relative divergence against depth (the layers of the first curve on the x-axis).

    Args:
        curves: ``{model name: layerwise_divergence(...)}``; models with different layers
            are drawn against their own layer index.
    """
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(range(len(curve)), list(curve.values()), marker="o", label=name)
    first = next(iter(curves.values()))
    ax.set_xticks(range(len(first)), list(first), rotation=30, ha="right", fontsize="small")
    ax.set_xlabel("layer (input side -> output side)")
    ax.set_ylabel("||h(x) - h(x_adv)|| / ||h(x)||")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title or "Layer-wise divergence of clean and adversarial representations")
    return fig
