"""Interactive explorers: move an eps slider and watch the adversarial points travel.

Everything expensive (attacks, features, 2-D maps) is computed once, up front, for every
run, attack and eps on the slider (``precompute``); moving a widget then only moves the
existing matplotlib artists (``set_offsets``) and redraws the figure on its ``Surface``
(``robustviz.viz.canvas``: ipympl's canvas, which zooms and pans, or a PNG image).

Click a point (a dot or a cross) and the inspection panel below the map shows that test
point: its clean and adversarial images, the amplified perturbation, the true, clean and
adversarial classes with confidences, the distance to the nearest prototype or centre
(for models that have them) and its path across the eps values, which is also drawn on the
map (``robustviz.viz.inspection``). ``inspect(index)`` does the same from code.

* ``explorer(runs, data)``: a 2-D map (UMAP, t-SNE, PCA, LDA) of each run's clean features
  with the adversarial features placed into it; selectors for the run, the attack, the map
  and the classes shown, and an eps slider.
* ``prototype_explorer(model, data)``: for a model with 2- or 3-dimensional features, the
  features themselves around the prototypes or cluster centres (on the unit circle/sphere
  for prototype heads).

Headless (no kernel, e.g. a script or CI) they show static figures instead:
``static_figures()`` returns one figure per eps value.

Example:
    >>> ex = explorer({"ce": ce_model, "pgd_at": at_model}, bundle, attacks=("fgsm", "pgd-10"))  # doctest: +SKIP
    >>> ex  # in a notebook: the widget  # doctest: +SKIP
    >>> ex.eps_slider.value = 0.3  # the same as moving the slider  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from ..data import DataBundle
from .canvas import Surface
from .embedding_plots import (
    PointArtists,
    add_class_legend,
    as_plotted,
    class_colours,
    draw_arrows,
    draw_centres,
    draw_points,
    draw_unit_sphere,
    embedding_title,
    feature_centres,
    label_sphere_map,
    misclassified_points,
    plot_embedding,
    plot_feature_space,
    sphere_coordinates,
    stamped,
)
from .extraction import Features, extract
from .inspection import PointPanel, describe_point, point_details
from .projection import Projection, project

DPI = 72  # the rendered image's resolution: lower is faster to redraw
PICK_RADIUS = 8  # display pixels: a click this close to a point inspects it


@dataclass
class ExplorerData:
    """Everything an explorer shows, computed once.

    Attributes:
        features: ``{run: {(attack, eps): Features}}``; eps 0 holds the clean features twice.
        projections: ``{(run, method, attack, eps): Projection}`` (empty for direct plots).
        attacks, eps_values, methods: the choices offered by the widgets.
        classes: class names. centres: ``{run: (centres, centre_labels, normalised)}`` for
            prototype / cluster models.
    """

    features: dict[str, dict[tuple[str, float], Features]]
    projections: dict[tuple[str, str, str, float], Projection]
    attacks: tuple[str, ...]
    eps_values: tuple[float, ...]
    methods: tuple[str, ...]
    classes: list[str]
    centres: dict[str, tuple] = field(default_factory=dict)

    @property
    def runs(self) -> list[str]:
        return list(self.features)


def precompute(
    runs: Mapping[str, nn.Module],
    data: DataBundle,
    attacks: Sequence[str] = ("fgsm",),
    eps_values: Sequence[float] | None = None,
    methods: Sequence[str] = ("pca",),
    n: int = 500,
    seed: int = 0,
    progress: bool = True,
    cache_dir=None,
) -> ExplorerData:
    """Attack, extract and project once for every run x attack x eps x map method.

    Args:
        runs: ``{name: model}``. data: a ``DataBundle`` (its test split is used).
        attacks: attack specs (``robustviz.attacks.make_attack``).
        eps_values: the slider's values (default: 0 to the bundle's eps in 4 steps).
        methods: projection methods to offer (empty for direct feature plots).
        n: test points (a stratified, seeded subset, the same for every run).
        seed: seed of the subset, the attacks and the maps.
        progress: show a progress bar.
        cache_dir: a folder where the 2-D maps are stored by content (``project``'s
            ``cache_dir``): the same features reopened later load their maps instead of
            refitting them. ``None``: memory only.

    The images and the softmax scores are kept too (float16 images), for the inspection panel.
    """
    eps_values = tuple(float(e) for e in (eps_values if eps_values is not None
                                          else np.linspace(0, data.eps, 5)))
    features: dict = {}
    projections: dict = {}
    steps = [(run, attack, eps) for run in runs for attack in attacks for eps in eps_values]
    for run, attack, eps in tqdm(steps, desc="explorer: attacks and maps", disable=not progress):
        model = runs[run]
        feats = _clean_copy(extract(model, data, n=n, seed=seed, keep_inputs=True), attack) if eps == 0 else \
            extract(model, data, attack=attack, eps=eps, n=n, seed=seed, keep_inputs=True)
        features.setdefault(run, {})[(attack, eps)] = feats
        for method in methods:
            projections[(run, method, attack, eps)] = project(feats, method=method, seed=seed, cache_dir=cache_dir)
    centres = {}
    for run, model in runs.items():
        try:
            centres[run] = feature_centres(model)
        except ValueError:
            pass
    return ExplorerData(features, projections, tuple(attacks), eps_values, tuple(methods), list(data.classes),
                        centres)


class _Explorer:
    """The widget tree, the artists and the redraw shared by both explorers."""

    def __init__(self, data: ExplorerData, max_arrows: int = 300, three_d: bool = False) -> None:
        try:
            import ipywidgets as widgets
        except ImportError as err:  # an extra: Colab and `pip install "robustviz[lab]"` provide it
            raise ImportError("the explorers need ipywidgets, which Colab and JupyterLab set-ups provide: "
                              "pip install ipywidgets (or pip install -e \".[lab]\")") from err

        self.data, self.max_arrows = data, max_arrows
        self.selected: int | None = None  # the inspected point's row
        self.run_selector = widgets.Dropdown(options=data.runs, description="run")
        self.attack_selector = widgets.Dropdown(options=list(data.attacks), description="attack")
        self.projection_selector = widgets.Dropdown(options=list(data.methods) or ["direct"], description="map")
        self.eps_slider = widgets.SelectionSlider(options=list(data.eps_values), value=data.eps_values[-1],
                                                  description="eps", continuous_update=False)
        self.class_filter = widgets.SelectMultiple(options=[(name, k) for k, name in enumerate(data.classes)],
                                                   value=tuple(range(len(data.classes))), description="classes",
                                                   rows=min(len(data.classes), 6))
        self.figure = Figure(figsize=(7.5, 5.2), dpi=DPI, layout="constrained")
        self.surface = Surface(self.figure)
        self.ax = self.figure.add_subplot(projection="3d" if three_d else None)
        self.palette = to_rgba_array(class_colours(range(10)))  # RGBA per class, looked up on every move
        self.artists = self._build_artists()
        self.marker = self.ax.scatter([], [], s=220, facecolors=(0, 0, 0, 0), edgecolors="black", linewidths=2,
                                      zorder=5)
        (self.path_line,) = self.ax.plot([], [], "-", color="black", linewidth=1.5, zorder=4)
        self.panel_text = widgets.HTML(value="<i>click a point (a dot or a cross) to inspect it</i>"
                                       if self.surface.interactive else "")
        self.point_panel = PointPanel(data.classes, dpi=DPI)
        self.panel_image = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        self.panel = widgets.VBox([self.panel_text, self.panel_image])
        self.widget = widgets.VBox([
            widgets.HBox([self.run_selector, self.attack_selector, self.projection_selector]),
            widgets.HBox([self.eps_slider, self.class_filter]),
            self.surface.widget,
            self.panel,
        ])
        self.surface.connect("button_press_event", self._on_click)
        self.eps_slider.observe(lambda change: self.update(), names="value")  # same limits and labels
        for control in (self.run_selector, self.attack_selector, self.projection_selector, self.class_filter):
            control.observe(lambda change: self.update(relayout=True), names="value")
        self.update()

    # -- what the subclasses decide ---------------------------------------------------------
    def coordinates(self, run: str, method: str, attack: str, eps: float):
        """``(clean [N, 2|3], adversarial [N, 2|3], title)`` for one choice of the widgets."""
        raise NotImplementedError

    def static_figures(self) -> list[Figure]:
        """Static figures of the current run, attack and map: one per eps value (headless fallback)."""
        raise NotImplementedError

    def extra_points(self) -> list[np.ndarray]:
        """Points besides the data that the axes limits must include (e.g. the centres)."""
        return []

    def label_axes(self, run: str, method: str) -> None:
        """Name the axes for the current map."""

    # -- drawing ----------------------------------------------------------------------------
    def current(self) -> tuple[str, str, str, float]:
        """The widgets' values: ``(run, map method, attack, eps)``."""
        return (self.run_selector.value, self.projection_selector.value, self.attack_selector.value,
                float(self.eps_slider.value))

    def current_features(self) -> Features:
        run, _, attack, eps = self.current()
        return self.data.features[run][(attack, eps)]

    def update(self, relayout: bool = False) -> None:
        """Move the artists to the widgets' current choice and redraw.

        ``relayout``: the axes' labels or limits may change (another run, attack, map or
        classes), so the figure's layout is solved again.
        """
        if relayout:
            self.surface.relayout()
        run, method, attack, eps = self.current()
        feats = self.current_features()
        clean, adversarial, title = self.coordinates(run, method, attack, eps)
        shown = np.isin(feats.labels.numpy(), list(self.class_filter.value))
        colours = self.palette[feats.labels.numpy()[shown] % len(self.palette)]
        _move(self.artists.clean, clean[shown], colours)
        _move(self.artists.adversarial, adversarial[shown], colours)
        _move(self.artists.misclassified, misclassified_points(clean, adversarial, feats, shown))
        self.artists.arrows.remove()
        arrow_rows = np.flatnonzero(shown)[: self.max_arrows]
        self.artists.arrows = draw_arrows(self.ax, clean[arrow_rows], adversarial[arrow_rows])
        self._set_limits(run, method, attack)
        self.label_axes(run, method)
        robust = float(((feats.pred_adv == feats.labels) & (feats.pred_clean == feats.labels)).float().mean())
        self.ax.set_title(f"{title}\n{run}, {attack}, eps = {eps:.3g}: robust accuracy {100 * robust:.1f}%",
                          fontsize="medium")
        self._show_inspected()
        self.surface.redraw()

    def render(self) -> bytes:
        """The figure as PNG bytes (what the widget shows)."""
        return self.surface.render()

    # -- inspecting a point -----------------------------------------------------------------
    def inspect(self, index: int | None) -> None:
        """Show test point ``index`` (a row of the explored subset) in the panel; ``None`` clears it."""
        self.selected = None if index is None else int(index)
        self._show_inspected()
        self.surface.redraw()

    def point_at(self, x: float, y: float) -> int | None:
        """The row of the shown point (dot or cross) nearest to display position ``(x, y)`` (pixels
        from the figure's bottom left), if one lies within ``PICK_RADIUS`` pixels; else ``None``."""
        if self.ax.name == "3d":
            return None
        run, method, attack, eps = self.current()
        rows = np.flatnonzero(np.isin(self.current_features().labels.numpy(), list(self.class_filter.value)))
        if rows.size == 0:
            return None
        clean, adversarial, _ = self.coordinates(run, method, attack, eps)
        drawn = self.ax.transData.transform(np.concatenate([clean[rows], adversarial[rows]]))
        distances = np.hypot(drawn[:, 0] - x, drawn[:, 1] - y)
        nearest = int(distances.argmin())
        return int(rows[nearest % rows.size]) if distances[nearest] <= PICK_RADIUS else None

    def point_position(self, index: int) -> tuple[float, float]:
        """Where clean point ``index`` is drawn: CSS pixels from the figure's top left."""
        run, method, attack, eps = self.current()
        x, y = self.ax.transData.transform(self.coordinates(run, method, attack, eps)[0][index])
        return self.surface.css_position(x, y)

    def _on_click(self, event) -> None:
        if event.inaxes is not self.ax or event.button != 1 or self.surface.toolbar_busy():
            return
        index = self.point_at(event.x, event.y)
        if index is not None:
            self.inspect(index)

    def _show_inspected(self) -> None:
        """Mark the inspected point and its path on the map and fill the panel (or empty both)."""
        if self.selected is None or self.ax.name == "3d":
            self.marker.set_offsets(np.empty((0, 2)))
            self.path_line.set_data([], [])
            self.panel_image.layout.display = "none"
            return
        run, method, attack, eps = self.current()
        clean = self.coordinates(run, method, attack, eps)[0][self.selected]
        steps = [self.coordinates(run, method, attack, value)[1][self.selected] for value in self.data.eps_values]
        path = np.array([clean, *steps])
        self.path_line.set_data(path[:, 0], path[:, 1])
        self.marker.set_offsets(self.coordinates(run, method, attack, eps)[1][self.selected: self.selected + 1])
        details = point_details(self.data, run, attack, eps, self.selected)
        self.panel_text.value = describe_point(details, self.data.classes)
        self.panel_image.value = self.point_panel.png(details)
        self.panel_image.layout.display = None

    def _build_artists(self) -> PointArtists:
        run, method, attack, eps = self.current()
        clean, adversarial, _ = self.coordinates(run, method, attack, eps)
        feats = self.data.features[run][(attack, eps)]
        artists = draw_points(self.ax, clean, adversarial, feats, self.max_arrows)
        if self.ax.name != "3d":
            for scatter in (artists.clean, artists.adversarial):
                stamped(scatter)
        add_class_legend(self.figure, self.ax, range(len(self.data.classes)), self.data.classes, True)
        return artists

    def _set_limits(self, run: str, method: str, attack: str) -> None:
        """Axes limits covering every eps of this run, attack and map, so the view stays put."""
        if getattr(self.ax, "sphere_map", False):
            return  # the whole sphere, always
        points = np.concatenate([np.concatenate(self.coordinates(run, method, attack, eps)[:2])
                                 for eps in self.data.eps_values] + self.extra_points())
        low, high = points.min(axis=0), points.max(axis=0)
        pad = 0.05 * np.maximum(high - low, 1e-6)
        setters = (self.ax.set_xlim, self.ax.set_ylim, getattr(self.ax, "set_zlim", None))
        for axis, setter in enumerate(setters[: points.shape[1]]):
            setter(low[axis] - pad[axis], high[axis] + pad[axis])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if _in_kernel():
            display(self.widget)
        else:
            for fig in self.static_figures():
                display(fig)


class FeatureExplorer(_Explorer):
    """A 2-D map per run; built by ``explorer``. Attributes: ``run_selector``, ``attack_selector``,
    ``projection_selector``, ``eps_slider``, ``class_filter``, ``image``, ``figure``, ``ax``,
    ``artists`` (the ``PointArtists`` being moved) and ``widget`` (the ``VBox``)."""

    def coordinates(self, run, method, attack, eps):
        projection = self.data.projections[(run, method, attack, eps)]
        return projection.clean, projection.adversarial, embedding_title(projection)

    def label_axes(self, run: str, method: str) -> None:
        _, _, attack, eps = self.current()
        x_label, y_label = self.data.projections[(run, method, attack, eps)].axis_labels
        self.ax.set_xlabel(x_label)
        self.ax.set_ylabel(y_label)

    def static_figures(self) -> list[Figure]:
        run, method, attack, _ = self.current()
        return [plot_embedding(self.data.features[run][(attack, eps)], classes=self.data.classes,
                               projection=self.data.projections[(run, method, attack, eps)],
                               title=f"{run}: {attack}, eps = {eps:.3g}") for eps in self.data.eps_values]


class PrototypeExplorer(_Explorer):
    """The 2-D or 3-D features of one model around its prototypes / centres; built by
    ``prototype_explorer``. Same attributes as ``FeatureExplorer``."""

    def __init__(self, data: ExplorerData, max_arrows: int = 300) -> None:
        run = data.runs[0]
        self.centres, self.centre_labels, self.normalise = data.centres.get(run, (None, None, False))
        dim = next(iter(data.features[run].values())).dim
        self.on_sphere = self.normalise and dim == 3  # drawn as a map of the sphere
        super().__init__(data, max_arrows, three_d=dim == 3 and not self.on_sphere)
        self.projection_selector.disabled = True  # the features are drawn as they are
        if self.on_sphere:
            label_sphere_map(self.ax)
        elif self.normalise:
            draw_unit_sphere(self.ax, dim)
        if self.centres is not None:
            draw_centres(self.ax, self.place(as_plotted(self.centres, self.normalise)), self.centre_labels)
        self.update()

    def place(self, points: np.ndarray | None) -> np.ndarray | None:
        """Points as drawn: on the sphere map for normalised 3-D features, else as they are."""
        return sphere_coordinates(points) if self.on_sphere else points

    def extra_points(self) -> list[np.ndarray]:
        return [] if self.centres is None else [self.place(as_plotted(self.centres, self.normalise))]

    def label_axes(self, run: str, method: str) -> None:
        if self.on_sphere:
            return
        symbol = "z / ||z||" if self.normalise else "z"
        for axis, setter in enumerate((self.ax.set_xlabel, self.ax.set_ylabel, getattr(self.ax, "set_zlabel", None))):
            if setter is not None:
                setter(f"{symbol} [{axis}]")

    def coordinates(self, run, method, attack, eps):
        feats = self.data.features[run][(attack, eps)]
        space = "z / ||z|| (the prototype rule's space)" if self.normalise else "features z"
        return (self.place(as_plotted(feats.clean, self.normalise)),
                self.place(as_plotted(feats.adversarial, self.normalise)), space)

    def static_figures(self) -> list[Figure]:
        run, _, attack, _ = self.current()
        return [plot_feature_space(self.data.features[run][(attack, eps)], centres=self.centres,
                                   centre_labels=self.centre_labels, normalise=self.normalise,
                                   classes=self.data.classes, title=f"{run}: {attack}, eps = {eps:.3g}")
                for eps in self.data.eps_values]


def explorer(
    runs: Mapping[str, nn.Module] | ExplorerData,
    data: DataBundle | None = None,
    attacks: Sequence[str] = ("fgsm",),
    eps_values: Sequence[float] | None = None,
    methods: Sequence[str] = ("pca",),
    n: int = 500,
    seed: int = 0,
    progress: bool = True,
    cache_dir=None,
) -> FeatureExplorer:
    """Explore several runs' feature maps under attack (module docstring).

    Args:
        runs: ``{name: model}`` (then ``data`` is needed) or a ready ``ExplorerData``.
        data, attacks, eps_values, methods, n, seed, progress, cache_dir: as in ``precompute``.

    Returns:
        a ``FeatureExplorer``; in a notebook it displays as the widget.
    """
    return FeatureExplorer(_data(runs, data, attacks, eps_values, methods, n, seed, progress, cache_dir))


def prototype_explorer(
    model: nn.Module,
    data: DataBundle,
    attacks: Sequence[str] = ("fgsm",),
    eps_values: Sequence[float] | None = None,
    n: int = 300,
    seed: int = 0,
    progress: bool = True,
    name: str = "model",
) -> PrototypeExplorer:
    """Watch a 2-D or 3-D feature model's points move relative to its prototypes as eps grows.

    Raises:
        ValueError: if the model's features are not 2- or 3-dimensional.
    """
    feat_dim = getattr(model, "feat_dim", None)
    if feat_dim not in (2, 3):
        raise ValueError(f"prototype_explorer needs a model with feat_dim 2 or 3, got {feat_dim}; "
                         "use explorer(...) with a projection for larger feature spaces")
    return PrototypeExplorer(_data({name: model}, data, attacks, eps_values, (), n, seed, progress))


def _data(runs, data, attacks, eps_values, methods, n, seed, progress, cache_dir=None) -> ExplorerData:
    if isinstance(runs, ExplorerData):
        return runs
    if data is None:
        raise ValueError("pass data= (a DataBundle) to precompute the runs' features, or an ExplorerData")
    return precompute(runs, data, attacks, eps_values, methods, n, seed, progress, cache_dir)


def _clean_copy(feats: Features, attack: str) -> Features:
    """eps = 0: the adversarial points are the clean points."""
    feats.adversarial, feats.pred_adv, feats.attack, feats.eps = feats.clean, feats.pred_clean, attack, 0.0
    feats.adversarial_inputs, feats.probs_adv = feats.inputs, feats.probs_clean
    return feats


def _move(artist, points: np.ndarray, colours=None) -> None:
    """Give a scatter new points (2-D ``set_offsets``; 3-D its ``_offsets3d``) and colours."""
    if points.shape[1] == 3:
        artist._offsets3d = (points[:, 0], points[:, 1], points[:, 2])
    else:
        artist.set_offsets(points)
    if colours is not None:
        artist.set_color(colours)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")
