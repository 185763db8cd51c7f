"""Linked views: two runs side by side on the same test points; a selection in one shows in both.

``linked_explorer(data, ("ce", "pgd_at"))`` draws each run's 2-D map of the same explored test
points next to each other, with one attack, map and eps slider for both. Drag a rectangle in
either map (with the toolbar's zoom and pan off) to select the clean points inside it: the
same test points get a black ring in *both* maps, and the line below says how many of them
each model still classifies correctly under the attack. Typical question: the points of one
tight cluster of the robust model, where do they sit in the standard model's map?

``select(indices)`` and ``select_region(view, x0, x1, y0, y1)`` do the same from code.

Example:
    >>> linked = linked_explorer(explored, ("ce", "pgd_at"))  # doctest: +SKIP
    >>> linked.select_region(1, -1.0, 0.0, -1.0, 0.0)  # the points in that square of pgd_at's map  # doctest: +SKIP
    >>> linked.selection[:5]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure
from matplotlib.widgets import RectangleSelector

from .canvas import Surface
from .embedding_plots import class_colours, draw_points, misclassified_points, stamped

DPI = 72


class LinkedExplorer:
    """Two runs' maps side by side with a shared selection; built by ``linked_explorer``.

    Attributes:
        runs: the two runs shown (left, right). selection: the selected rows (``int`` array).
        attack_selector, projection_selector, eps_slider: the shared widgets.
        axes: the two matplotlib axes. highlights: the ring scatter of each view.
        readout: an ``ipywidgets.HTML`` describing the selection. widget: the ``VBox``.
    """

    def __init__(self, data, runs: Sequence[str]) -> None:
        try:
            import ipywidgets as widgets
        except ImportError as err:
            raise ImportError("the linked views need ipywidgets (and ipympl for selections): "
                              "pip install ipywidgets ipympl (or pip install -e \".[viz]\")") from err

        self.data, self.runs = data, list(runs)
        self.selection = np.empty(0, dtype=int)
        self.attack_selector = widgets.Dropdown(options=list(data.attacks), description="attack")
        self.projection_selector = widgets.Dropdown(options=list(data.methods), description="map")
        self.eps_slider = widgets.SelectionSlider(options=list(data.eps_values), value=data.eps_values[-1],
                                                  description="eps", continuous_update=False)
        self.figure = Figure(figsize=(11.0, 4.8), dpi=DPI, layout="constrained")
        self.surface = Surface(self.figure)
        self.axes = list(self.figure.subplots(1, 2))
        self.palette = to_rgba_array(class_colours(range(10)))
        self.artists, self.highlights, self.selectors = [], [], []
        for view, ax in enumerate(self.axes):
            clean, adversarial = self.coordinates(view)
            artists = draw_points(ax, clean, adversarial, self.features(view), max_arrows=0)
            for scatter in (artists.clean, artists.adversarial):
                stamped(scatter)
            self.artists.append(artists)
            self.highlights.append(ax.scatter([], [], s=70, facecolors=(0, 0, 0, 0), edgecolors="black",
                                              linewidths=1.6, zorder=6))
            self.selectors.append(RectangleSelector(ax, self._selected_in(view), useblit=False, button=[1],
                                                    minspanx=2, minspany=2, spancoords="pixels"))
        self.readout = widgets.HTML(value="<i>drag a rectangle in either map to select points</i>")
        self.widget = widgets.VBox([widgets.HBox([self.attack_selector, self.projection_selector, self.eps_slider]),
                                    self.surface.widget, self.readout])
        for control in (self.attack_selector, self.projection_selector, self.eps_slider):
            control.observe(lambda change: self.update(relayout=True), names="value")
        self.update()

    def features(self, view: int):
        """The ``Features`` of view 0 (left) or 1 (right) at the widgets' attack and eps."""
        return self.data.features[self.runs[view]][(self.attack_selector.value, float(self.eps_slider.value))]

    def coordinates(self, view: int) -> tuple[np.ndarray, np.ndarray]:
        """``(clean [N, 2], adversarial [N, 2])`` map coordinates of a view."""
        key = (self.runs[view], self.projection_selector.value, self.attack_selector.value,
               float(self.eps_slider.value))
        projection = self.data.projections[key]
        return projection.clean, projection.adversarial

    def update(self, relayout: bool = False) -> None:
        """Move every view's points to the widgets' choice; keep the selection ringed.

        ``relayout``: solve the figure's layout again (another attack, map or eps: new limits).
        """
        if relayout:
            self.surface.relayout()
        for view, ax in enumerate(self.axes):
            feats, (clean, adversarial) = self.features(view), self.coordinates(view)
            artists = self.artists[view]
            artists.clean.set_offsets(clean)
            artists.adversarial.set_offsets(adversarial)
            artists.adversarial.set_color(self.palette[feats.labels.numpy() % len(self.palette)])
            artists.misclassified.set_offsets(misclassified_points(clean, adversarial, feats))
            points = np.concatenate([clean, adversarial])
            low, high = points.min(axis=0), points.max(axis=0)
            pad = 0.05 * np.maximum(high - low, 1e-6)
            ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
            ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
            robust = float(((feats.pred_adv == feats.labels) & (feats.pred_clean == feats.labels)).float().mean())
            ax.set_title(f"{self.runs[view]}: {self.attack_selector.value}, eps = {float(self.eps_slider.value):.3g}"
                         f", robust {100 * robust:.1f}%", fontsize="medium")
        self._show_selection()

    def select(self, indices) -> None:
        """Select test points by row (the same rows in both runs) and ring them in both views."""
        self.selection = np.unique(np.asarray(indices, dtype=int))
        self._show_selection()

    def select_region(self, view: int, x0: float, x1: float, y0: float, y1: float) -> None:
        """Select the clean points of ``view`` (0 left, 1 right) inside a rectangle of its map."""
        clean = self.coordinates(view)[0]
        inside = ((clean[:, 0] >= min(x0, x1)) & (clean[:, 0] <= max(x0, x1))
                  & (clean[:, 1] >= min(y0, y1)) & (clean[:, 1] <= max(y0, y1)))
        self.select(np.flatnonzero(inside))

    def _selected_in(self, view: int):
        def on_select(press, release) -> None:
            if self.surface.toolbar_busy():
                return
            self.select_region(view, press.xdata, release.xdata, press.ydata, release.ydata)
        return on_select

    def _show_selection(self) -> None:
        rows = self.selection
        for view, highlight in enumerate(self.highlights):
            highlight.set_offsets(self.coordinates(view)[0][rows] if rows.size else np.empty((0, 2)))
        self.readout.value = self._describe_selection()
        self.surface.redraw()

    def _describe_selection(self) -> str:
        rows = self.selection
        if rows.size == 0:
            text = "no points selected: drag a rectangle in either map"
        else:
            kept = []
            for view, run in enumerate(self.runs):
                feats = self.features(view)
                robust = ((feats.pred_adv[rows] == feats.labels[rows]) & (feats.pred_clean[rows] == feats.labels[rows]))
                kept.append(f"{run} {int(robust.sum())}")
            text = (f"{rows.size} points selected, ringed in both maps; still correct under "
                    f"{self.attack_selector.value} at eps = {float(self.eps_slider.value):.3g}: " + ", ".join(kept))
        return f'<div class="robustviz-selection" data-count="{rows.size}">{text}</div>'

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from .explorers import _in_kernel

        display(self.widget if _in_kernel() else self.figure)


def linked_explorer(data, runs: Sequence[str] = ("ce", "pgd_at")) -> LinkedExplorer:
    """Two runs of an ``ExplorerData`` side by side with a shared selection (module docstring).

    Args:
        data: from ``precompute`` with at least one map method (``methods=("pca",)``, ...).
        runs: the two run names to show, left and right.

    Raises:
        ValueError: unless ``runs`` names two runs of ``data`` and ``data`` has a map.
    """
    runs = list(runs)
    missing = [run for run in runs if run not in data.features]
    if len(runs) != 2 or missing:
        raise ValueError(f"linked_explorer needs two of the explored runs {data.runs}, got {runs}")
    if not data.methods:
        raise ValueError("linked_explorer needs 2-D maps: precompute with methods=('pca',) (or 'lda', 'umap')")
    return LinkedExplorer(data, runs)
