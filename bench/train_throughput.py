"""CPU training throughput: images per second and achieved GFLOP/s of ``fit`` for ``ce`` and
``pgd_at`` (quick recipes, smallcnn), next to a bare training step and a large matmul.

``python bench/train_throughput.py [--threads 2] [--steps 120]``

* ``fit``: ``robustviz.train.fit`` for ``--steps`` optimiser steps on mnist-mini (one epoch's
  worth of batches, so the per-epoch held-out monitoring runs once per ~59 steps as in a real
  run); seconds from the history (training plus monitoring).
* ``steps only``: the same, with the monitor switched off (``val_size=0``).
* ``bare step``: the same model and batch in a hand-written loop (forward, cross-entropy,
  backward, Adam step), once in NCHW and once channels_last.
* FLOPs per training step are counted with ``bench/flops.py`` (``torch.utils.flop_counter``'s
  formulas) on one step of the recipe (for ``pgd_at``: the attack's forward and backward passes
  plus the update's).
* ``matmul``: a 2,048 x 2,048 float32 matrix product, the CPU's attainable rate.

Median of ``--repeats`` runs. Output: a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from flops import CountFlops

from robustviz import data, methods, models
from robustviz.methods import Batch, Step
from robustviz.train import fit, input_statistics


def build(bundle, key: str, channels_last: bool = False):
    config = methods.get(key).config("mnist", "quick")
    mean, std = input_statistics(config, bundle)
    model = models.build(config.model, 10, 1, feat_dim=config.feat_dim, mean=mean, std=std, seed=0)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def flops_per_step(bundle, key: str, batch_size: int) -> float:
    """FLOPs of one training step of ``key`` (loss incl. its attack, backward; the optimiser is free)."""
    model = build(bundle, key).train()
    recipe = methods.get(key)
    method = recipe.build_method(recipe.config("mnist", "quick"), bundle.eps)
    method.attach(model)
    batch = Batch(bundle.train.x[:batch_size], bundle.train.y[:batch_size])
    with CountFlops() as counter:
        method.loss(model, batch, Step(0, 1, 1)).loss.backward()  # progress 1: the full eps (no ramp)
    return float(counter.total)


def time_fit(bundle, key: str, steps: int, batch_size: int, monitor: bool) -> float:
    """Seconds per training image of ``fit`` (the history's epoch times)."""
    model = build(bundle, key)
    history = fit(model, bundle, key, steps=steps, batch_size=batch_size, progress=False,
                  **({} if monitor else {"val_size": 0}))
    return sum(history["seconds"]) / (steps * batch_size)


def time_bare_step(bundle, key: str, steps: int, batch_size: int, channels_last: bool) -> float:
    """Seconds per image of forward + CE + backward + Adam on the recipe's model, no loop around it."""
    model = build(bundle, key, channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = bundle.train.x[:batch_size], bundle.train.y[:batch_size]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(3):  # warm-up
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - started) / (steps * batch_size)


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=59, help="optimiser steps per fit (59 = one epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = data.load("mnist-mini")
    batch_size = 128
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch_size}, "
          f"median of {args.repeats}\n")
    print("| recipe | FLOPs per step | fit (img/s) | fit GFLOP/s | steps only (img/s) | bare step NCHW (img/s) "
          "| bare step channels_last (img/s) |")
    print("|---|---|---|---|---|---|---|")
    for key in ("ce", "pgd_at"):
        flops = flops_per_step(bundle, key, batch_size)
        fit_s = statistics.median(time_fit(bundle, key, args.steps, batch_size, True) for _ in range(args.repeats))
        steps_s = statistics.median(time_fit(bundle, key, args.steps, batch_size, False)
                                    for _ in range(args.repeats))
        bare = [statistics.median(time_bare_step(bundle, key, 20, batch_size, cl) for _ in range(args.repeats))
                for cl in (False, True)]
        print(f"| {key} | {flops / 1e9:.2f} G | {1 / fit_s:,.0f} | {flops / batch_size / fit_s / 1e9:.0f} | "
              f"{1 / steps_s:,.0f} | {1 / bare[0]:,.0f} | {1 / bare[1]:,.0f} |")
    print(f"\nfloat32 matmul 2048^3: {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
