"""How much does robustviz's PGD cost beyond the gradient computations it needs?

PGD-k needs k forward passes and k backward passes to the input. This benchmark times
``robustviz.attacks.pgd`` (k steps, random start, one restart) against exactly that
work done by hand on the same model and batch: k times ``model(x)`` + cross-entropy +
``torch.autograd.grad(loss, x)``. The overhead is the attack's own bookkeeping
(random start, sign, projection, clipping, mode switching, input checks).

Run: ``python bench/pgd_overhead.py`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from robustviz import models
from robustviz.attacks import pgd


def gradient_passes(model, x, y, k: int) -> None:
    """The irreducible work of PGD-k: k forward + backward-to-input passes."""
    for _ in range(k):
        x_var = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_var), y, reduction="none").sum()
        torch.autograd.grad(loss, x_var)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(arch: str, shape: tuple[int, ...], batch: int, k: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = models.build(arch, 10, shape[0], seed=0).eval()
    x = torch.rand(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    eps = 0.3 if shape[0] == 1 else 8 / 255
    # Interleave the two measurements so slow drifts of the machine hit both equally.
    attack_times, baseline_times = [], []
    for _ in range(repeats):
        attack_times.append(median_seconds(lambda: pgd(model, x, y, eps, steps=k, seed=0), 1))
        baseline_times.append(median_seconds(lambda: gradient_passes(model, x, y, k), 1))
    attack, baseline = statistics.median(attack_times), statistics.median(baseline_times)
    return {"model": arch, "input": "x".join(map(str, shape)), "batch": batch, "k": k,
            "pgd_s": attack, "passes_s": baseline, "overhead_pct": 100 * (attack / baseline - 1)}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cases = [("smallcnn", (1, 28, 28), 256, 10), ("smallcnn", (1, 28, 28), 256, 40),
             ("preact_resnet18", (3, 32, 32), 32, 10)]
    rows = [measure(*case, repeats=args.repeats) for case in cases]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print("| model | input | batch | k | PGD-k (s) | k fwd+bwd (s) | overhead |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['batch']} | {r['k']} | {r['pgd_s']:.3f} | "
              f"{r['passes_s']:.3f} | {r['overhead_pct']:+.1f}% |")
    return rows


if __name__ == "__main__":
    main()
