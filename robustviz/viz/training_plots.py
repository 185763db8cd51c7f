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


def plot_training_curves(histories: History | Mapping[str, History], title: str | None = None,
                         keys: list[str] | None = None) -> Figure:
    """One panel per group of ``curve_groups`` (loss terms, accuracy in %, learning rate).

    One run: one colour per curve. Several runs: one colour per run, one line style per key.
    A loss panel whose positive values span more than two decades (e.g. ADR's or ClusTR's
    terms next to each other) gets a logarithmic axis.

    Args:
        histories: a ``History`` or ``{run name: History}``.
        title: the figure's title.
        keys: plot only these history keys (default: every curve of ``curve_groups``).

    Returns:
        a ``Figure`` with up to three axes.

    Example:
        >>> fig = plot_training_curves({"pgd_at": history_a, "fgsm_at": history_b})  # doctest: +SKIP
    """
    runs = {"": histories} if isinstance(histories, History) else dict(histories)
    if not runs or not any(len(h) for h in runs.values()):
        raise ValueError("no epochs to plot: the histories are empty")
    groups: dict[str, list[str]] = {}
    for history in runs.values():
        for group, group_keys in curve_groups(history).items():
            chosen = [k for k in group_keys if keys is None or k in keys]
            if chosen:
                groups.setdefault(group, [])
                groups[group] += [k for k in chosen if k not in groups[group]]
    if not groups:
        raise ValueError(f"none of the keys {keys} is in the histories")
    fig = Figure(figsize=(4.2 * len(groups), 3.8), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    for ax, (group, group_keys) in zip(axes, groups.items()):
        scale = 100 if group == "accuracy" else 1
        plotted: list[float] = []
        for run_index, (run, history) in enumerate(runs.items()):
            epochs = history["epoch"]
            for key_index, key in enumerate(group_keys):
                points = [(e, scale * v) for e, v in zip(epochs, history[key]) if v is not None]
                if not points:
                    continue
                colour, style = ((f"C{key_index % 10}", "-") if len(runs) == 1
                                 else (f"C{run_index % 10}", styles[key_index % len(styles)]))
                ax.plot(*zip(*points), style, marker=".", color=colour, label=f"{run}: {key}" if run else key)
                plotted += [v for _, v in points]
            for epoch, alarm in zip(epochs, history["co_alarm"]):
                if alarm:
                    ax.axvline(epoch, color="C3", alpha=0.4, lw=2)
        positive = [v for v in plotted if v > 0]
        if group == "loss terms" and positive and len(positive) == len(plotted) and max(positive) > 100 * min(positive):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("%" if group == "accuracy" else group)
        ax.set_title(group)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    return fig
