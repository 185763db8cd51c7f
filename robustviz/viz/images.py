"""Images side by side: clean and adversarial inputs with their labels or predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure


def plot_image_grid(
    rows: Mapping[str, torch.Tensor],
    labels: Mapping[str, Sequence[int] | torch.Tensor] | None = None,
    classes: Sequence[str] | None = None,
    columns: int = 10,
) -> Figure:
    """One row of images per entry of ``rows``, titled ``"{row}: {label}"``.

    Args:
        rows: ``{row name: images [N, C, H, W] in [0, 1]}`` (C = 1 grey or 3 RGB); the first
            ``columns`` images of each row are shown.
        labels: ``{row name: a label per image}`` (true labels or predictions), optional.
        classes: class names for the labels (default: the label numbers).
        columns: images per row.

    Returns:
        a ``Figure`` with ``len(rows) x columns`` axes.

    Example:
        >>> fig = plot_image_grid({"clean": x, "PGD": x_adv}, {"clean": predict(model, x),
        ...                                                  "PGD": predict(model, x_adv)})  # doctest: +SKIP
    """
    if not rows:
        raise ValueError("plot_image_grid needs at least one row of images")
    columns = min(columns, max(len(images) for images in rows.values()))
    fig = Figure(figsize=(1.0 * columns, 1.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for axes_row, (name, images) in zip(axes, rows.items()):
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"row {name!r}: expected images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        row_labels = None if labels is None or name not in labels else [int(v) for v in labels[name]]
        for index, ax in enumerate(axes_row):
            ax.axis("off")
            if index >= len(images):
                continue
            image = images[index].detach().float().cpu().clamp(0, 1)
            ax.imshow(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            if row_labels is not None:
                label = classes[row_labels[index]] if classes is not None else row_labels[index]
                ax.set_title(f"{name}: {label}", fontsize="small")
    return fig
