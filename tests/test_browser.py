"""End to end in a real browser: JupyterLab serves ``09_feature_space_explorer.ipynb``, headless
Chromium (driven by Playwright) runs it, drags the explorer's eps slider, and the rendered figure
must change; with the slider's callback disconnected (a test double) the same check must fail.
A click on a point of the explorer's map (ipympl's canvas) must open the inspection panel with
that point's images and labels, and a rectangle dragged in one linked view must ring the same
points in the other (``inspection.png`` is the README's screenshot).

What it needs: the Playwright Python package (``make test`` installs it) and a Chromium binary,
``$ROBUSTVIZ_CHROMIUM`` or ``/usr/bin/chromium`` (``make test`` installs Debian's ``chromium``
where it is missing and it can, see ``scripts/install-chromium``). Playwright never downloads a
browser here. Without a browser the test is skipped, unless ``ROBUSTVIZ_REQUIRE_BROWSER=1``
(set by ``.ci/run``), where it fails.

The server runs on 127.0.0.1 on a free port with a random token, on a copy of the notebook in a
temporary folder (the committed ``.ipynb`` never gets outputs), with its own Jupyter config,
data and runtime folders and a fresh run cache (``ROBUSTVIZ_N_TRAIN`` small, so the three models
train in seconds). Screenshots before and after each slider move go to
``test-artifacts/browser/``. The server, its kernel and the browser are shut down however the
test ends.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "09_feature_space_explorer.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("ROBUSTVIZ_CHROMIUM", "/usr/bin/chromium")
# Chromium on a closed network: no background connections, no sandbox (we may run as root).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]
SERVER_START_S = 90
RUN_ALL_S = 900  # cold cache: the notebook trains three small models and precomputes the maps
FIGURE_CHANGE_S = 30

pytestmark = pytest.mark.slow


def browser_or_skip():
    """The Playwright module, or skip (fail under ``ROBUSTVIZ_REQUIRE_BROWSER=1``)."""
    problem = None
    try:
        from playwright import sync_api
    except ImportError:
        problem = "the playwright package is not installed (make test installs it)"
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = f"no Chromium at {CHROMIUM} (install Debian's chromium, or set ROBUSTVIZ_CHROMIUM)"
    if problem is None:
        return sync_api
    if os.environ.get("ROBUSTVIZ_REQUIRE_BROWSER") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} in {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop the server and everything it started (its kernels are in its process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:  # kernels that outlived the server
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the explorer notebook: ``(base url, token)``."""
    browser_or_skip()  # before starting anything
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, work / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / ".config"), JUPYTER_RUNTIME_DIR=str(work / ".runtime"),
               ROBUSTVIZ_RESULTS=str(work / "results"), ROBUSTVIZ_N_TRAIN="600", ROBUSTVIZ_DEVICE="cpu")
    for name in ("ROBUSTVIZ_PROFILE", "MPLBACKEND"):  # the notebook picks the inline backend itself
        env.pop(name, None)
    # No "get notified about Jupyter news?" popup over the screenshots, and no attempt to fetch news.
    (work / ".config" / "labconfig").mkdir(parents=True)
    (work / ".config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    log = work / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.workspaces_dir={work / '.workspaces'}", "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}", process, log)
        yield base, token
    finally:
        stop(process)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyterlab.log")


@pytest.fixture(scope="module")
def page(lab):
    """The notebook opened in headless Chromium and run to the end (every cell, no error)."""
    sync_api = browser_or_skip()
    base, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.set_default_timeout(60_000)
            tab.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            tab.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                  " && window.jupyterapp.shell.currentWidget.sessionContext"
                                  " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                                  " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                                  timeout=SERVER_START_S * 1000)
            run_all_cells(tab)
            yield tab
        finally:
            browser.close()


def run_all_cells(tab) -> None:
    """Run the notebook in the page and wait until every code cell has run; fail on an error."""
    tab.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + RUN_ALL_S
    while time.monotonic() < deadline:
        state = cell_states(tab)
        errors = [cell for cell in state if cell["error"]]
        assert not errors, f"a notebook cell failed in the browser:\n{json.dumps(errors, indent=1)[:4000]}"
        if all(cell["count"] is not None for cell in state) and kernel_status(tab) == "idle":
            return
        time.sleep(2)
    tab.screenshot(path=str(ARTIFACTS / "timeout.png"), full_page=True)
    raise TimeoutError(f"the notebook did not finish in {RUN_ALL_S} s: {cell_states(tab)}")


def cell_states(tab) -> list[dict]:
    """Per code cell: its execution count (None until it ran) and its error output, if any."""
    return tab.evaluate("""() => {
        const notebook = window.jupyterapp.shell.currentWidget.content;
        return notebook.widgets.filter(cell => cell.model.type === 'code').map((cell, index) => {
            const outputs = cell.model.outputs.toJSON();
            const error = outputs.find(output => output.output_type === 'error');
            return {index, count: cell.model.executionCount,
                    error: error ? error.ename + ': ' + error.evalue : null};
        });
    }""")


def kernel_status(tab) -> str:
    return tab.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status")


def execute_in_kernel(tab, code: str) -> None:
    """Run ``code`` in the notebook's kernel (as a cell would, without adding one)."""
    tab.evaluate("""async (code) => {
        const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        const reply = await kernel.requestExecute({code, store_history: false}).done;
        if (reply.content.status !== 'ok') { throw new Error(JSON.stringify(reply.content)); }
    }""", code)


def kernel_output(tab, code: str) -> str:
    """Run ``code`` in the notebook's kernel and return what it printed."""
    return tab.evaluate("""async (code) => {
        const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        const future = kernel.requestExecute({code, store_history: false});
        let printed = '';
        future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') { printed += msg.content.text; } };
        const reply = await future.done;
        if (reply.content.status !== 'ok') { throw new Error(JSON.stringify(reply.content)); }
        return printed;
    }""", code)


def explorer_locator(tab):
    """The first explorer widget: a box holding the figure canvas and a slider labelled ``eps``."""
    box = tab.locator("div.widget-vbox").filter(has=tab.locator(".jupyter-matplotlib-canvas-div")).filter(
        has=tab.locator("select[multiple]")).filter(
        has=tab.locator(".widget-slider .widget-label", has_text="eps")).first
    box.scroll_into_view_if_needed()
    return box


def drag_eps_slider(tab, box, to: str) -> None:
    """Drag the eps slider's handle with the mouse to its ``"left"`` or ``"right"`` end."""
    track = box.locator(".widget-slider .noUi-target").first.bounding_box()
    handle = box.locator(".widget-slider .noUi-handle").first.bounding_box()
    start = (handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    end_x = track["x"] - 20 if to == "left" else track["x"] + track["width"] + 20
    tab.mouse.move(*start)
    tab.mouse.down()
    tab.mouse.move(end_x, start[1], steps=15)
    tab.mouse.up()


def slider_readout(box) -> str:
    return box.locator(".widget-slider .widget-readout").first.inner_text().strip()


def figure_png(box) -> bytes:
    """The explorer's rendered figure as the browser paints it (a screenshot of the canvas)."""
    return box.locator(".jupyter-matplotlib-canvas-div").first.screenshot()


def canvas_origin(box) -> tuple[float, float]:
    """The page position of the top left of the figure's canvas."""
    bounds = box.locator(".jupyter-matplotlib-canvas-div canvas").first.bounding_box()
    return bounds["x"], bounds["y"]


# A clean point of the explorer with no other drawn point within 3 pick radii (so a click picks it),
# inside the axes; printed as JSON with its position on the canvas and its labels as the panel names them.
ISOLATED_POINT = """
import json
import numpy as np
run, method, attack, eps = explorer.current()
clean, adversarial, _ = explorer.coordinates(run, method, attack, eps)
drawn = explorer.ax.transData.transform(np.concatenate([clean, adversarial]))
own = drawn[:len(clean)]
gaps = np.hypot(own[:, None, 0] - drawn[None, :, 0], own[:, None, 1] - drawn[None, :, 1])
gaps[np.arange(len(clean)), np.arange(len(clean))] = np.inf
gaps[np.arange(len(clean)), len(clean) + np.arange(len(clean))] = np.inf  # its own cross is the same point
box = explorer.ax.bbox
inside = (own[:, 0] > box.x0 + 10) & (own[:, 0] < box.x1 - 10) & (own[:, 1] > box.y0 + 10) & (own[:, 1] < box.y1 - 10)
index = int(np.where(inside, gaps.min(axis=1), -1).argmax())
feats = explorer.current_features()
x, y = explorer.point_position(index)
print(json.dumps({"index": index, "x": x, "y": y, "label": explorer.data.classes[int(feats.labels[index])],
                  "adversarial": explorer.data.classes[int(feats.pred_adv[index])]}))
"""


def figure_changes_after_drag(tab, box, to: str, name: str) -> tuple[bool, str, str]:
    """Drag the slider; ``(did the painted figure change within FIGURE_CHANGE_S, readout before, after)``.

    Screenshots ``{name}-before.png`` and ``{name}-after.png`` of the page go to ``ARTIFACTS``.
    """
    tab.screenshot(path=str(ARTIFACTS / f"{name}-before.png"))
    before, readout_before = figure_png(box), slider_readout(box)
    drag_eps_slider(tab, box, to)
    deadline = time.monotonic() + FIGURE_CHANGE_S
    changed = False
    while time.monotonic() < deadline and not changed:
        time.sleep(0.5)
        changed = figure_png(box) != before
    time.sleep(0.5)
    tab.screenshot(path=str(ARTIFACTS / f"{name}-after.png"))
    return changed, readout_before, slider_readout(box)


def test_explorer_figure_follows_the_eps_slider_in_chromium(page):
    box = explorer_locator(page)
    assert box.locator(".widget-dropdown").count() >= 3, "the run, attack and map selectors"
    assert box.locator("select[multiple]").count() == 1, "the class filter"
    changed, before, after = figure_changes_after_drag(page, box, "left", "explorer")
    assert float(before) == 0.3 and float(after) == 0.0, "the drag must move the slider from the largest eps to 0"
    assert changed, "the figure did not change after the eps slider moved"


def test_a_click_on_a_point_opens_the_inspection_panel(page):
    box = explorer_locator(page)
    # The largest eps, so that the panel shows a real attack (the slider test leaves it at 0).
    execute_in_kernel(page, "explorer.eps_slider.value = explorer.data.eps_values[-1]")
    time.sleep(1)
    point = json.loads(kernel_output(page, ISOLATED_POINT))
    left, top = canvas_origin(box)
    page.mouse.click(left + point["x"], top + point["y"])
    panel = box.locator(f'.robustviz-point[data-index="{point["index"]}"]')
    panel.wait_for(timeout=FIGURE_CHANGE_S * 1000)
    assert panel.get_attribute("data-label") == point["label"]
    assert panel.get_attribute("data-adversarial") == point["adversarial"]
    assert f"point {point['index']}: true {point['label']}" in panel.inner_text()
    image = box.locator(".widget-image").last  # the panel's clean | adversarial | perturbation | path figure
    image.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 300", arg=image.element_handle())
    time.sleep(1)
    box.screenshot(path=str(ARTIFACTS / "inspection.png"))
    # Back to eps 0, as the slider test left it, and let that redraw reach the page before the next test.
    execute_in_kernel(page, "explorer.eps_slider.value = explorer.data.eps_values[0]")
    time.sleep(2)


LINKED_AXES = """
import json
extents = [ax.get_window_extent() for ax in linked.axes]
boxes = [linked.surface.css_position(*e.p0) + linked.surface.css_position(*e.p1) for e in extents]
print(json.dumps(boxes))
"""

LINKED_STATE = """
import json
import numpy as np
rows = linked.selection
print(json.dumps({"count": int(rows.size),
                  "left": bool(np.allclose(linked.highlights[0].get_offsets(), linked.coordinates(0)[0][rows])),
                  "right": bool(np.allclose(linked.highlights[1].get_offsets(), linked.coordinates(1)[0][rows]))}))
"""


def test_a_selection_in_one_linked_view_rings_the_same_points_in_the_other(page):
    box = page.locator("div.widget-vbox").filter(has=page.locator(".robustviz-selection")).first
    box.scroll_into_view_if_needed()
    (left_x0, left_y0, left_x1, left_y1), _ = json.loads(kernel_output(page, LINKED_AXES))
    origin_x, origin_y = canvas_origin(box)
    start = (origin_x + left_x0 + 0.2 * (left_x1 - left_x0), origin_y + left_y1 + 0.2 * (left_y0 - left_y1))
    end = (origin_x + left_x0 + 0.8 * (left_x1 - left_x0), origin_y + left_y1 + 0.8 * (left_y0 - left_y1))
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()
    readout = box.locator(".robustviz-selection")
    deadline = time.monotonic() + FIGURE_CHANGE_S
    while time.monotonic() < deadline and readout.get_attribute("data-count") == "0":
        time.sleep(0.5)
    time.sleep(1)
    box.screenshot(path=str(ARTIFACTS / "linked.png"))
    state = json.loads(kernel_output(page, LINKED_STATE))
    assert int(readout.get_attribute("data-count")) == state["count"] > 0, "the drag selected points"
    assert state["left"] and state["right"], "the same test points are ringed in both views"
    assert "ringed in both maps" in readout.inner_text()


def test_a_disconnected_callback_is_caught(page):
    """The test double: the slider no longer calls the explorer's redraw. The slider still moves
    in the page, but the check above must now see an unchanged figure."""
    box = explorer_locator(page)
    execute_in_kernel(page, "explorer.eps_slider.unobserve_all()")
    try:
        changed, before, after = figure_changes_after_drag(page, box, "right", "disconnected")
        assert before != after, "the slider itself must still move"
        assert not changed, "the figure changed although the callback was disconnected"
    finally:
        execute_in_kernel(page, "explorer.eps_slider.observe(lambda change: explorer.update(), names='value')")
