"""Feature-space visualisation timings (issue 5 targets).

1. ``extract`` + ``project(method="umap")`` of N clean + N adversarial test features of a
   quickly trained smallcnn: the first call in a fresh process (numba compiles UMAP), a warm
   call (compiled, projection cache cleared) and a cached call (same inputs again).
2. One explorer interaction: moving the eps slider (warm), median and max over several
   moves; target at most 200 ms.

Run: ``python bench/viz_umap.py`` (N = 2,000, as in docs/benchmarks.md) or
``python bench/viz_umap.py --quick`` (a smoke run with small N; its timings mean little).
Run it in a fresh process: the first-call time includes numba's compilation only once.
"""

from __future__ import annotations

import argparse
import statistics
import time

import matplotlib

matplotlib.use("Agg")

from robustviz import data, viz  # noqa: E402
from robustviz.train import train_model  # noqa: E402


def seconds_of(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="clean points (and as many adversarial)")
    parser.add_argument("--attack", default="fgsm", help="attack spec for the adversarial features")
    parser.add_argument("--moves", type=int, default=10, help="slider moves to time")
    parser.add_argument("--quick", action="store_true", help="small smoke run: N = 200, 4 moves")
    args = parser.parse_args(argv)
    n, moves = (200, 4) if args.quick else (args.n, args.moves)

    bundle = data.load("mnist-mini", n_train=1000 if args.quick else None, seed=0)
    model, _ = train_model("ce", bundle, epochs=1, progress=False, device="cpu")
    eps = bundle.eps

    def extract_and_map():
        feats = viz.extract(model, bundle, attack=args.attack, eps=eps, n=n)
        return viz.project(feats, method="umap")

    times = {}
    times["first"], projection = seconds_of(extract_and_map)
    viz.clear_projection_cache()
    times["warm"], _ = seconds_of(extract_and_map)
    times["cached_projection"], _ = seconds_of(lambda: viz.project(
        viz.extract(model, bundle, attack=args.attack, eps=eps, n=n), method="umap"))
    print(f"extract + UMAP of {n} clean + {n} adversarial ({args.attack}, eps {eps}) features: "
          f"first call {times['first']:.1f} s (numba compiles UMAP), warm {times['warm']:.1f} s, "
          f"projection cached {times['cached_projection']:.2f} s (the extraction and attack remain); "
          f"trustworthiness {projection.trustworthiness:.3f}")

    eps_values = (0.0, eps / 2, eps)
    build, explorer = seconds_of(lambda: viz.explorer({"ce": model}, bundle, attacks=(args.attack,),
                                                      eps_values=eps_values, methods=("umap",), n=n, progress=False))
    slider = []
    for move in range(moves + 1):
        started = time.perf_counter()
        explorer.eps_slider.value = eps_values[move % len(eps_values)]  # redraws, as a user's move does
        slider.append(time.perf_counter() - started)
    slider = slider[1:]  # the first move warms the caches of the renderer
    times["explorer_build"], times["slider_median"], times["slider_max"] = build, statistics.median(slider), max(slider)
    print(f"explorer (UMAP, {len(eps_values)} eps values, {n} points): built in {build:.1f} s; one slider move "
          f"median {1000 * times['slider_median']:.0f} ms, max {1000 * times['slider_max']:.0f} ms over {moves} "
          f"moves (target <= 200 ms)")
    return times


if __name__ == "__main__":
    main()
