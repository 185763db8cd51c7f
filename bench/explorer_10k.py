"""Explorer interactions at 10,000 points per map (issue 18): slider move, selection, inspection.

The 10,000 images of mnist-mini (its train and test splits together: all of the official
MNIST test set) go through two seeded, untrained smallcnns (the timing depends on the
number of points, not on the weights), FGSM at eps 0.1 and 0.3, and a PCA map. Then, warm
(after one untimed interaction of each kind), each interaction is timed as the kernel does
it with ipympl's canvas: the explorer's update, a full Agg draw of the figure and the PNG
diff ipympl sends to the browser (``get_diff_image``). The browser's painting of that PNG
is not included.

* slider move: ``explorer.eps_slider.value = ...`` (every point moves);
* selection: ``linked.select_region(...)`` on the two-view linked explorer (rings in both);
* inspection: ``explorer.inspect(index)`` (panel figure rendered, path drawn).

It also times the maps fitted against the same maps loaded from ``cache_dir`` (what reopening
a notebook does); PCA is the cheapest map to fit, so UMAP and t-SNE gain more.

Run: ``python bench/explorer_10k.py`` (docs/benchmarks.md) or ``--n 1000 --moves 3`` for a smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import matplotlib
import torch

matplotlib.use("Agg")

from robustviz import data, models, viz  # noqa: E402
from robustviz.data import Split  # noqa: E402


def interaction_ms(surface_figure, action) -> float:
    """Milliseconds for ``action()`` plus the draw and PNG diff ipympl's canvas makes after it."""
    started = time.perf_counter()
    action()
    canvas = surface_figure.canvas
    canvas.draw()
    if hasattr(canvas, "get_diff_image"):
        canvas._png_is_old = True
        canvas.get_diff_image()
    return 1000 * (time.perf_counter() - started)


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms ({len(values)} interactions)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="test points per map")
    parser.add_argument("--moves", type=int, default=10, help="timed interactions of each kind")
    args = parser.parse_args(argv)

    mini = data.load("mnist-mini")
    everything = Split(torch.cat([mini.train.x, mini.test.x]), torch.cat([mini.train.y, mini.test.y]))
    bundle = dataclasses.replace(mini, test=everything)
    n = min(args.n, len(everything))
    print(f"data: mnist-mini train + test, {len(everything)} images; {n} points per map")
    runs = {name: models.build("smallcnn", 10, 1, mean=bundle.mean, std=bundle.std, seed=seed).eval()
            for seed, name in enumerate(("a", "b"))}
    cache = tempfile.mkdtemp(prefix="robustviz-maps-")
    started = time.perf_counter()
    explored = viz.precompute(runs, bundle, attacks=("fgsm",), eps_values=(0.0, 0.1, 0.3), methods=("pca",), n=n,
                              progress=False, cache_dir=cache)
    print(f"precompute (attacks, features, PCA maps): {time.perf_counter() - started:.1f} s")
    for source, directory in (("fitted", None), ("loaded from the disk cache", cache)):
        viz.clear_projection_cache()
        started = time.perf_counter()
        for feats in (f for per_run in explored.features.values() for f in per_run.values()):
            viz.project(feats, method="pca", cache_dir=directory)
        print(f"the {len(explored.projections)} PCA maps {source}: {time.perf_counter() - started:.2f} s")

    explorer = viz.explorer(explored)
    linked = viz.linked_explorer(explored, ("a", "b"))
    print(f"canvas: {type(explorer.figure.canvas).__module__}.{type(explorer.figure.canvas).__name__}")
    eps_values = explored.eps_values
    clean = linked.coordinates(0)[0]

    def region(k):
        low, high = clean.min(axis=0), clean.max(axis=0)
        fraction = 0.2 + 0.05 * (k % 5)
        return (0, low[0], low[0] + fraction * (high[0] - low[0]), low[1], low[1] + fraction * (high[1] - low[1]))

    kinds = {
        "slider move": lambda k: interaction_ms(explorer.figure, lambda: setattr(
            explorer.eps_slider, "value", eps_values[k % len(eps_values)])),
        "selection (linked views)": lambda k: interaction_ms(linked.figure, lambda: linked.select_region(*region(k))),
        "inspection (click)": lambda k: interaction_ms(explorer.figure, lambda: explorer.inspect(37 * k % n)),
    }
    for name, timed in kinds.items():
        timed(args.moves + 1)  # warm-up, not counted
        print(f"{name}: {summary([timed(k) for k in range(args.moves)])}")


if __name__ == "__main__":
    main()
