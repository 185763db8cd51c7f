"""Training curves from a ``History``: losses, accuracies and the learning rate per epoch.

Every numeric key of the history goes into one of three panels: names ending in ``_acc``
(train, held-out clean and PGD accuracy) into *accuracy*, ``lr`` into *learning rate*, the
rest (the loss and each method's terms, e.g. ``adv_ce``, ``lc``) into *loss terms*.
Epochs where the catastrophic-overfitting monitor fired (``co_alarm``) get a red line.

Example:
    >>> model, history = train_model("pgd_at", bundle)  # doctest: +SKIP
    >>> plot_training_curves({"pgd_at": history}).savefig("training.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from ..train.history import History

NOT_CURVES = {"epoch", "step", "seconds", "co_alarm"}


def curve_groups(history: History) -> dict[str, list[str]]:
    """The history's numeric keys grouped into ``"loss terms"``, ``"accuracy"`` and ``"learning rate"``."""
    groups: dict[str, list[str]] = {"loss terms": [], "accuracy": [], "learning rate": []}
    for key in history.keys():
        values = [v for v in history[key] if v is not None]
        if key in NOT_CURVES or key.startswith("best_") or not values or isinstance(values[0], bool):
            continue
        if not isinstance(values[0], (int, float)):
            continue
        group = "accuracy" if key.endswith("_acc") else "learning rate" if key == "lr" else "loss terms"
        groups[group].append(key)
    return {name: keys for name, keys in groups.items() if keys}


MAX_SERIES = 6  # more lines than this on one axis cannot be told apart
RUN_CURVES = ("loss", "train_acc", "val_clean_acc", "val_pgd_acc")


def plot_training_curves(histories: History | Mapping[str, History], title: str | None = None,
                         keys: list[str] | None = None) -> Figure:
    """Training curves with at most ``MAX_SERIES`` lines per panel, legends outside the data.

    * One run: a panel per group of ``curve_groups`` (loss terms, accuracy in %, learning
      rate), one colour per curve; a run with more than ``MAX_SERIES`` loss terms (ADR) gets one
      small panel per term instead. A loss panel whose positive values span more than two
      decades gets a logarithmic axis.
    * Several runs: one panel per quantity (``keys``, default the loss, the training accuracy
      and the held-out clean and robust accuracy), one colour per run.

    Epochs where the catastrophic-overfitting alarm fired (``co_alarm``) get a red line.

    Args:
        histories: a ``History`` or ``{run name: History}``.
        title: the figure's title.
        keys: plot only these history keys.

    Returns:
        a ``Figure``.

    Example:
        >>> fig = plot_training_curves({"pgd_at": history_a, "fgsm_at": history_b})  # doctest: +SKIP
    """
    runs = {"": histories} if isinstance(histories, History) else dict(histories)
    if not runs or not any(len(h) for h in runs.values()):
        raise ValueError("no epochs to plot: the histories are empty")
    if len(runs) == 1:
        fig = _one_run(next(iter(runs.values())), keys)
    else:
        fig = _per_quantity(runs, keys)
    if title:
        fig.suptitle(title)
    return fig


def _one_run(history: History, keys: list[str] | None) -> Figure:
    groups = {group: [k for k in group_keys if keys is None or k in keys]
              for group, group_keys in curve_groups(history).items()}
    groups = {group: group_keys for group, group_keys in groups.items() if group_keys}
    if not groups:
        raise ValueError(f"none of the keys {keys} is in the histories")
    panels: list[tuple[str, list[str]]] = []
    for group, group_keys in groups.items():
        if group == "loss terms" and len(group_keys) > MAX_SERIES:
            panels += [(key, [key]) for key in group_keys]
        else:
            panels.append((group, group_keys))
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(3.6 * columns + 1.2, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flatten()
    epochs = history["epoch"]
    for ax, (name, panel_keys) in zip(axes, panels):
        accuracy, plotted = name == "accuracy", []
        for index, key in enumerate(panel_keys):
            points = [(e, (100 if accuracy else 1) * v) for e, v in zip(epochs, history[key]) if v is not None]
            if points:
                ax.plot(*zip(*points), marker=".", color=f"C{index % 10}", label=key)
                plotted += [v for _, v in points]
        _mark_alarms(ax, history)
        _finish(ax, name, plotted if name == "loss terms" else [])
        if len(panel_keys) > 1:
            ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def _per_quantity(runs: dict[str, History], keys: list[str] | None) -> Figure:
    available = {key for history in runs.values() for group in curve_groups(history).values() for key in group}
    quantities = [key for key in (keys or RUN_CURVES) if key in available]
    if not quantities:
        raise ValueError(f"none of the keys {keys or RUN_CURVES} is in the histories")
    columns = min(len(quantities), 4)
    rows = -(-len(quantities) // columns)
    fig = Figure(figsize=(3.4 * columns + 1.6, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flatten()
    for ax, key in zip(axes, quantities):
        scale = 100 if key.endswith("_acc") else 1
        for index, (run, history) in enumerate(runs.items()):
            points = [(e, scale * v) for e, v in zip(history["epoch"], history[key]) if v is not None]
            if points:
                ax.plot(*zip(*points), marker=".", color=f"C{index % 10}", label=run)
            _mark_alarms(ax, history, colour=f"C{index % 10}")
        _finish(ax, key, [])
        ax.set_ylabel("%" if scale == 100 else key)
    for ax in axes[len(quantities):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    return fig


def _mark_alarms(ax, history: History, colour: str = "C3") -> None:
    """A vertical line at every epoch whose catastrophic-overfitting alarm fired."""
    for epoch, alarm in zip(history["epoch"], history["co_alarm"]):
        if alarm:
            ax.axvline(epoch, color=colour, alpha=0.4, lw=2, ls=":")


def _finish(ax, name: str, loss_values: list[float]) -> None:
    """Labels and grid; a logarithmic axis when the (positive) loss values span > 2 decades."""
    positive = [v for v in loss_values if v > 0]
    if positive and len(positive) == len(loss_values) and max(positive) > 100 * min(positive):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("%" if name == "accuracy" else name if name != "loss terms" else "loss")
    ax.set_title(name)
    ax.grid(alpha=0.3)
