"""Static figures. Every function returns a ``matplotlib.figure.Figure`` (no pyplot state),
which renders inline in notebooks and saves headless with ``fig.savefig(path)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..evaluate import LadderReport, RobustnessReport


def plot_accuracy_vs_eps(
    reports: Mapping[str, RobustnessReport], attacks: Sequence[str] | None = None
) -> Figure:
    """Accuracy against eps: one panel per attack, one colour per model, with 95 % intervals.

    Args:
        reports: ``{model name: RobustnessReport}``.
        attacks: attack names to draw (default: all in the reports, without "worst case").

    The clean accuracy is drawn at eps = 0 for every line; the shaded band around a line is the
    Wilson 95 % interval of each accuracy on the report's ``n`` test images.
    """
    from ..evaluate.intervals import wilson_interval

    first = next(iter(reports.values()))
    names = list(attacks or [a for a in first.results[sorted(first.results)[0]] if a != "worst case"])
    fig = Figure(figsize=(3.6 * len(names) + 1.8, 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    for ax, attack in zip(axes, names):
        for index, (model_name, report) in enumerate(reports.items()):
            budgets = sorted(report.results)
            if attack not in report.results[budgets[0]]:
                continue
            eps = [0.0] + budgets
            accs = [report.clean_acc] + [report.results[b][attack] for b in budgets]
            low, high = zip(*(wilson_interval(a, report.n) for a in accs))
            ax.plot(eps, [100 * a for a in accs], marker="o", color=f"C{index % 10}", label=model_name)
            ax.fill_between(eps, [100 * v for v in low], [100 * v for v in high], color=f"C{index % 10}", alpha=0.15)
        ax.set_xlabel("eps (L-inf, [0, 1] pixel units)")
        ax.set_title(attack)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"accuracy (%), n = {first.n}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="small")
    fig.suptitle("Accuracy under attack (bands: 95 % Wilson intervals)")
    return fig


def plot_feature_pca(
    panels: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    classes: Sequence[str],
    adversarial_label: str = "adversarial",
) -> Figure:
    """2-D PCA of clean features with the adversarial features mapped into the same plane.

    Args:
        panels: ``{title: (z_clean [N, d], z_adv [N, d], y [N])}``, one subplot each. The
            PCA is fitted on the clean features of that panel only.
        classes: class names for the legend.
        adversarial_label: legend text for the adversarial points.

    Clean points are dots coloured by class, adversarial points are crosses in the colour
    of their true class, and a thin line joins each clean point to its adversarial copy.
    """
    from sklearn.decomposition import PCA

    fig = Figure(figsize=(5.2 * len(panels), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, (z_clean, z_adv, y)) in zip(axes, panels.items()):
        pca = PCA(n_components=2).fit(z_clean.numpy())
        clean, adv = pca.transform(z_clean.numpy()), pca.transform(z_adv.numpy())
        labels = y.numpy()
        colors = np.array([f"C{k % 10}" for k in labels])
        segments = np.stack([clean, adv], axis=1)
        for start, end in segments[:200]:
            ax.plot(*zip(start, end), color="0.6", lw=0.4, alpha=0.5, zorder=1)
        ax.scatter(clean[:, 0], clean[:, 1], c=colors, s=8, zorder=2)
        ax.scatter(adv[:, 0], adv[:, 1], c=colors, s=14, marker="x", lw=0.8, zorder=3)
        explained = 100 * pca.explained_variance_ratio_.sum()
        ax.set_title(f"{title}\n(PCA of clean features, {explained:.0f}% variance)")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    handles = [axes[0].scatter([], [], color=f"C{k % 10}", s=12, label=name)
               for k, name in enumerate(classes)]
    handles.append(axes[0].scatter([], [], color="k", marker="x", label=adversarial_label))
    fig.legend(handles=handles, loc="outside right center", fontsize="small")
    return fig


def plot_ladder(report: LadderReport) -> Figure:
    """The attack ladder: accuracy under each attack (bars) and the worst case so far (line).

    The dashed line is the reported number; the distance down to the worst-case line is
    how much of it the stronger attacks took away.
    """
    fig = Figure(figsize=(7.0, 3.8), layout="constrained")
    ax = fig.add_subplot()
    names = ["clean"] + [row.attack for row in report.rows]
    accuracy = [report.clean_acc] + [row.accuracy for row in report.rows]
    worst = [report.clean_acc] + [row.worst_case for row in report.rows]
    positions = np.arange(len(names))
    ax.bar(positions, [100 * a for a in accuracy], color="C0", alpha=0.6, label="accuracy under this attack")
    ax.plot(positions, [100 * w for w in worst], "o-", color="C3", label="worst case so far")
    ax.axhline(100 * report.reported, ls="--", color="gray", label=f"reported ({100 * report.reported:.1f}%)")
    ax.set_xticks(positions, names, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.legend(fontsize="small")
    ax.set_title(f"Attack ladder at eps = {report.eps:.3g}: worst case over attacks {100 * report.worst_case:.1f}%")
    return fig


def plot_certified_accuracy(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                            unit: str = "feature-space L2 radius") -> Figure:
    """Certified accuracy against radius, one line per model.

    Args:
        curves: ``{model name: (radii, certified accuracies in [0, 1])}``, e.g. from
            ``robustviz.evaluate.certified_accuracy``.
        unit: the x-axis label (feature-space radius unless divided by a Lipschitz bound); a
            feature-space unit says so in the title too: such a radius certifies nothing about
            the input without a Lipschitz bound of the network.
    """
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for name, (radii, accs) in curves.items():
        ax.plot(list(radii), [100 * a for a in accs], marker=".", label=name)
    ax.set_xlabel(unit)
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("Certified accuracy of the hard nearest-centre rule"
                 + (" in feature space" if unit.startswith("feature") else ""))
    return fig


def plot_tradeoff(points: Mapping[str, tuple[float, float, int]], robust_label: str = "robust accuracy") -> Figure:
    """Clean accuracy against robust accuracy, one point per model, with 95 % Wilson intervals.

    Args:
        points: ``{model name: (clean accuracy, robust accuracy, n test images)}``, in the order
            to join them (e.g. by increasing TRADES beta).
        robust_label: the x-axis label (name the attack and eps).

    Example:
        >>> fig = plot_tradeoff({"beta = 1": (0.97, 0.55, 500), "beta = 6": (0.96, 0.70, 500)})  # doctest: +SKIP
    """
    from ..evaluate.intervals import wilson_interval

    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    xs, ys = [], []
    for index, (name, (clean, robust, n)) in enumerate(points.items()):
        (x_low, x_high), (y_low, y_high) = wilson_interval(robust, n), wilson_interval(clean, n)
        ax.errorbar(100 * robust, 100 * clean, xerr=[[100 * (robust - x_low)], [100 * (x_high - robust)]],
                    yerr=[[100 * (clean - y_low)], [100 * (y_high - clean)]], fmt="o", color=f"C{index % 10}",
                    capsize=3, label=name)
        xs.append(100 * robust)
        ys.append(100 * clean)
    ax.plot(xs, ys, color="0.6", lw=0.8, zorder=0)
    ax.set_xlabel(f"{robust_label} (%)")
    ax.set_ylabel("clean accuracy (%)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", fontsize="small")
    ax.set_title("The robustness-accuracy trade-off (bars: 95 % intervals)")
    return fig
