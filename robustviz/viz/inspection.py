"""Inspect one point of an explorer: its image, what the attack did to it and where it went.

``point_details`` gathers everything the explorers know about one test point for one run and
attack: the clean and the adversarial image, the true class, the clean and adversarial
predictions with their confidences (softmax of the model's scores), the distance to the
nearest prototype or cluster centre where the model has them, and the point's path across
the eps values (prediction and true-class confidence at each). ``plot_point`` draws it as one
figure (``PointPanel`` keeps one such figure and refills it, as the explorer does on every
click); ``describe_point`` writes it as a line of HTML for the explorer's panel.

Example:
    >>> data = precompute({"ce": model}, bundle, attacks=("pgd-10",), eps_values=(0, 0.1, 0.3))  # doctest: +SKIP
    >>> details = point_details(data, "ce", "pgd-10", 0.3, index=7)  # doctest: +SKIP
    >>> plot_point(details, data.classes)  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..geometry import squared_distances
from .embedding_plots import as_plotted


@dataclass
class PointDetails:
    """One explored test point under one run, attack and eps.

    Attributes:
        index: the point's row in the explored subset (the same row in every run).
        run, attack, eps: what the point is shown under.
        label: the true class. pred_clean, pred_adv: the predicted classes.
        confidence_clean, confidence_adv: softmax probability of each prediction, in [0, 1].
        image, adversarial_image: ``[C, H, W]`` float32 images in [0, 1].
        centre_distance_clean, centre_distance_adv: distance of the features to the nearest
            prototype / cluster centre (in the space the model's rule compares in), or ``None``.
        centre_class_clean, centre_class_adv: the class of that nearest centre, or ``None``.
        path: one ``(eps, predicted class, true-class confidence)`` per eps value, in order.
    """

    index: int
    run: str
    attack: str
    eps: float
    label: int
    pred_clean: int
    confidence_clean: float
    pred_adv: int
    confidence_adv: float
    image: torch.Tensor
    adversarial_image: torch.Tensor
    centre_distance_clean: float | None
    centre_distance_adv: float | None
    centre_class_clean: int | None
    centre_class_adv: int | None
    path: list[tuple[float, int, float]]


def point_details(data, run: str, attack: str, eps: float, index: int) -> PointDetails:
    """Everything about test point ``index`` of an ``ExplorerData`` under ``run``, ``attack``, ``eps``.

    Args:
        data: an ``ExplorerData`` from ``precompute`` (which keeps the images).
        run, attack, eps: a run, an attack and an eps value of ``data``.
        index: the point's row, ``0 <= index < n``.

    Raises:
        ValueError: for an index out of range or data precomputed without images.
    """
    feats = data.features[run][(attack, eps)]
    if not 0 <= index < len(feats):
        raise ValueError(f"index must be in [0, {len(feats) - 1}], got {index}")
    if feats.inputs is None or feats.probs_clean is None:
        raise ValueError("these features were extracted without images; precompute keeps them "
                         "(extract(..., keep_inputs=True))")
    label = int(feats.labels[index])
    distances = _centre_distances(data, run, feats, index)
    path = []
    for value in data.eps_values:
        step = data.features[run][(attack, value)]
        path.append((float(value), int(step.pred_adv[index]), float(step.probs_adv[index, label])))
    return PointDetails(
        index=index, run=run, attack=attack, eps=float(eps), label=label,
        pred_clean=int(feats.pred_clean[index]), confidence_clean=float(feats.probs_clean[index].max()),
        pred_adv=int(feats.pred_adv[index]), confidence_adv=float(feats.probs_adv[index].max()),
        image=feats.inputs[index].float(), adversarial_image=feats.adversarial_inputs[index].float(),
        centre_distance_clean=distances[0], centre_distance_adv=distances[1],
        centre_class_clean=distances[2], centre_class_adv=distances[3], path=path)


def plot_point(details: PointDetails, classes: Sequence[str] | None = None, dpi: int = 72) -> Figure:
    """Four panels: clean image, adversarial image, amplified perturbation, path across eps.

    The perturbation ``x_adv - x`` is shown amplified to the full grey range: mid-grey is no
    change, white ``+eps``, black ``-eps`` (summed over colour channels for RGB images).
    The last panel plots the true-class confidence against eps, each point labelled with
    the predicted class.

    Args:
        details: from ``point_details``. classes: class names (default: the numbers).
        dpi: the figure's resolution.
    """
    fig = Figure(figsize=(8.6, 2.3), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 4, width_ratios=(1, 1, 1, 1.6))
    for ax, image in zip(axes, (details.image, details.adversarial_image, details.image[:1])):
        ax.imshow(_as_picture(image), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    _fill_point(fig, details, _namer(classes))
    return fig


class PointPanel:
    """The explorer's inspection figure: ``plot_point``'s figure made once, then refilled for
    each point (new images, titles and path) instead of being built again.

    Example:
        >>> panel = PointPanel(data.classes)  # doctest: +SKIP
        >>> png = panel.png(point_details(data, "ce", "fgsm", 0.3, index=7))  # PNG bytes  # doctest: +SKIP
    """

    def __init__(self, classes: Sequence[str] | None = None, dpi: int = 72) -> None:
        self.classes, self.dpi = classes, dpi
        self.figure: Figure | None = None

    def show(self, details: PointDetails) -> Figure:
        """The figure showing ``details`` (the same figure each time, for images of one size)."""
        same_size = self.figure is not None and self.figure.axes[0].images[0].get_array().shape[:2] == \
            tuple(details.image.shape[1:])
        if same_size:
            _fill_point(self.figure, details, _namer(self.classes))
        else:
            self.figure = plot_point(details, self.classes, self.dpi)
            FigureCanvasAgg(self.figure)
        return self.figure

    def png(self, details: PointDetails) -> bytes:
        """``show(details)`` as PNG bytes. The first one lays the figure out; later ones keep that layout."""
        figure = self.show(details)
        buffer = io.BytesIO()
        figure.canvas.print_png(buffer)
        figure.set_layout_engine("none")
        return buffer.getvalue()


def describe_point(details: PointDetails, classes: Sequence[str] | None = None) -> str:
    """The point as a line of HTML for the explorer's panel (its data attributes name the point).

    Example:
        >>> describe_point(details, data.classes)  # doctest: +SKIP
        '<div class="robustviz-point" data-index="7" ...>point 7: true 4, clean 4 (98%), ...</div>'
    """
    name = _namer(classes)
    text = (f"point {details.index}: true <b>{name(details.label)}</b>, clean prediction "
            f"<b>{name(details.pred_clean)}</b> ({100 * details.confidence_clean:.0f}%), adversarial "
            f"({details.attack}, eps = {details.eps:.3g}) <b>{name(details.pred_adv)}</b> "
            f"({100 * details.confidence_adv:.0f}%)")
    if details.centre_distance_clean is not None:
        text += (f"; nearest centre: class {name(details.centre_class_clean)} at "
                 f"{details.centre_distance_clean:.3g} clean, class {name(details.centre_class_adv)} at "
                 f"{details.centre_distance_adv:.3g} adversarial")
    attributes = (f'data-index="{details.index}" data-label="{html.escape(name(details.label))}" '
                  f'data-clean="{html.escape(name(details.pred_clean))}" '
                  f'data-adversarial="{html.escape(name(details.pred_adv))}"')
    return f'<div class="robustviz-point" {attributes}>{text}</div>'


# ---- helpers ---------------------------------------------------------------------------------


def _namer(classes):
    return (lambda k: str(classes[k])) if classes is not None else (lambda k: str(k))


def _fill_point(fig: Figure, details: PointDetails, name) -> None:
    """Put ``details`` into a figure made by ``plot_point``: images, titles and the path panel."""
    axes = fig.axes
    perturbation = (details.adversarial_image - details.image).sum(0)
    scale = max(float(perturbation.abs().max()), 1e-8)
    panels = ((details.image, f"clean: {name(details.pred_clean)} ({100 * details.confidence_clean:.0f}%)", "black"),
              (details.adversarial_image, f"adversarial: {name(details.pred_adv)} "
                                          f"({100 * details.confidence_adv:.0f}%)", "C3"))
    for ax, (image, title, colour) in zip(axes, panels):
        ax.images[0].set_data(_as_picture(image))
        ax.set_title(title, fontsize="small", color=colour)
    axes[2].images[0].set_data(perturbation.numpy())
    axes[2].images[0].set_clim(-scale, scale)
    if scale <= 1e-6:
        title = "no perturbation (eps = 0)"
    else:
        title = f"perturbation x{1 / scale:.0f}" if scale < 1 else "perturbation"
    axes[2].set_title(title, fontsize="small")
    axes[3].clear()
    _plot_path(axes[3], details, name)
    fig.suptitle(f"point {details.index}: true class {name(details.label)}, {details.run}, {details.attack}, "
                 f"eps = {details.eps:.3g}", fontsize="medium")


def _as_picture(image: torch.Tensor) -> np.ndarray:
    """A ``[C, H, W]`` image as what ``imshow`` takes: ``[H, W]`` grey or ``[H, W, 3]`` colour, in [0, 1]."""
    image = image.clamp(0, 1)
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def _plot_path(ax, details: PointDetails, name) -> None:
    eps = [step[0] for step in details.path]
    confidence = [step[2] for step in details.path]
    ax.plot(eps, confidence, "-o", color="0.4", markersize=4)
    for value, predicted, conf in details.path:
        colour = "black" if predicted == details.label else "C3"
        ax.annotate(name(predicted), (value, conf), textcoords="offset points", xytext=(0, 5), ha="center",
                    fontsize="x-small", color=colour)
    ax.axvline(details.eps, color="C0", linewidth=0.8, linestyle=":")
    ax.set_ylim(-0.05, 1.2)
    ax.set_xlabel("eps", fontsize="small")
    ax.set_ylabel("P(true class)", fontsize="small")
    ax.set_title("path across eps (labels: prediction)", fontsize="small")
    ax.tick_params(labelsize="x-small")


def _centre_distances(data, run: str, feats, index: int):
    """``(clean distance, adversarial distance, clean centre class, adversarial centre class)`` or Nones."""
    if run not in data.centres or feats.layer != "features":
        return None, None, None, None
    centres, centre_labels, normalise = data.centres[run]
    centres = torch.from_numpy(as_plotted(centres, normalise)).double()
    out = []
    for points in (feats.clean, feats.adversarial):
        z = torch.from_numpy(as_plotted(points[index: index + 1], normalise)).double()
        nearest = int(squared_distances(z, centres)[0].argmin())
        out.append((float((z[0] - centres[nearest]).norm()), int(centre_labels[nearest])))
    return out[0][0], out[1][0], out[0][1], out[1][1]
