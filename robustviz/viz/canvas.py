"""The explorers' drawing surface: an interactive matplotlib canvas (ipympl) or a PNG image.

With ipympl installed (the ``viz`` extra), an explorer's figure lives in ipympl's canvas
widget: the toolbar zooms and pans, and mouse clicks and drags reach the kernel as matplotlib
events (``mpl_connect``), which is how a point is picked or a region selected. ipympl draws
with matplotlib's 2-D canvas renderer (no WebGL), and works in JupyterLab, Notebook 7 and
Colab (with ``output.enable_custom_widget_manager()``). Without ipympl the figure is rendered
into an ``ipywidgets.Image`` on every change: widgets work, zoom and clicks do not.

Example:
    >>> surface = Surface(Figure(figsize=(4, 3)))  # doctest: +SKIP
    >>> surface.widget  # the canvas (or image) to put into a widget tree  # doctest: +SKIP
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

TOOLBAR_PX = 40  # CSS pixels: ipympl's toolbar (one column of buttons) floats over the canvas's left edge


class Surface:
    """One figure shown as a widget; ``redraw()`` after moving its artists.

    The figure's layout (constrained layout) is solved by its first draw and then kept, which
    makes later draws much cheaper; call ``relayout()`` before a change that alters the
    axes' labels or limits (another run or map), so that the next draw solves it again.

    Attributes:
        figure: the matplotlib figure. widget: the ipympl ``Canvas``, or an
            ``ipywidgets.Image`` without ipympl. interactive: whether it is the ipympl canvas.
    """

    def __init__(self, figure: Figure) -> None:
        try:
            import ipywidgets as widgets
        except ImportError as err:  # an extra: Colab and `pip install "robustviz[lab]"` provide it
            raise ImportError("the explorers need ipywidgets: pip install ipywidgets ipympl "
                              "(or pip install -e \".[viz]\")") from err

        self.figure = figure
        self.widget = _ipympl_canvas(figure)
        self.interactive = self.widget is not None
        if not self.interactive:
            FigureCanvasAgg(figure)
            self.widget = widgets.Image(format="png")
        self._layout = figure.get_layout_engine()
        if self.interactive:
            _leave_room_for_toolbar(figure, self._layout)
        figure.canvas.mpl_connect("draw_event", self._keep_layout)

    def redraw(self) -> None:
        """Show the figure's current state: a draw request to the canvas, or a new PNG."""
        if self.interactive:
            self.figure.canvas.draw_idle()
        else:
            self.widget.value = self.render()

    def render(self) -> bytes:
        """The figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.canvas.print_png(buffer)
        return buffer.getvalue()

    def relayout(self) -> None:
        """Solve the figure's layout again at its next draw (after that it is kept again)."""
        if self._layout is not None:
            self.figure.set_layout_engine(self._layout)

    def _keep_layout(self, event) -> None:
        """After a draw: keep the axes where the layout engine put them."""
        if self.figure.get_layout_engine() is self._layout is not None:
            self.figure.set_layout_engine("none")

    def connect(self, event: str, handler) -> None:
        """Call ``handler(event)`` on a matplotlib event (only the interactive canvas sends any)."""
        self.figure.canvas.mpl_connect(event, handler)

    def toolbar_busy(self) -> bool:
        """Whether the toolbar's zoom or pan mode is on (clicks then belong to it)."""
        toolbar = getattr(self.figure.canvas, "toolbar", None)
        return bool(getattr(toolbar, "mode", ""))

    def css_position(self, x: float, y: float) -> tuple[float, float]:
        """Display coordinates (pixels from the bottom left) -> CSS pixels from the canvas's top left."""
        ratio = getattr(self.figure.canvas, "device_pixel_ratio", 1) or 1
        return float(x) / ratio, float(self.figure.bbox.height - y) / ratio


def _leave_room_for_toolbar(figure: Figure, layout) -> None:
    """Lay the figure out right of the toolbar, so that its buttons do not cover the y axis."""
    if isinstance(layout, ConstrainedLayoutEngine):  # otherwise the figure's own margins stay
        left = TOOLBAR_PX / (figure.get_figwidth() * figure.dpi)  # the canvas is this many CSS pixels wide
        layout.set(rect=(left, 0, 1 - left, 1))


def _ipympl_canvas(figure: Figure):
    try:
        from ipympl.backend_nbagg import Canvas, FigureManager
    except ImportError:  # the viz extra; without it the explorers render PNG images
        return None
    canvas = Canvas(figure)
    FigureManager(canvas, 0)  # gives the canvas its toolbar (zoom, pan, home)
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.resizable = False
    canvas.toolbar_visible = "visible"
    canvas.toolbar_position = "left"
    return canvas
