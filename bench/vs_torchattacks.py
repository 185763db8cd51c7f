"""robustviz PGD-10 throughput against torchattacks' PGD-10 on the same model and batch.

Both attacks run L-inf PGD with a random start, 10 steps of size ``2.5 * eps / 10``, on
the same model in eval mode, interleaved so that drifts of the machine hit both equally.
Throughput is attacked images per second (median over repeats); the ratio is
robustviz / torchattacks (above 1: robustviz is faster).

torchattacks is a benchmark-only dependency (``make bench`` installs it with --no-deps:
its requests pin conflicts with jupyterlab-server).

Run: ``python bench/vs_torchattacks.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustviz import models
from robustviz.attacks import pgd


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(arch: str, shape: tuple[int, ...], batch: int, repeats: int, steps: int = 10) -> dict:
    import torchattacks

    torch.manual_seed(0)
    model = models.build(arch, 10, shape[0], seed=0).eval()
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    eps = 0.3 if shape[0] == 1 else 8 / 255
    step_size = 2.5 * eps / steps
    theirs = torchattacks.PGD(model, eps=eps, alpha=step_size, steps=steps, random_start=True)
    ours = lambda: pgd(model, x, y, eps, steps=steps, step_size=step_size, seed=0)  # noqa: E731
    reference = lambda: theirs(x, y)  # noqa: E731
    ours(), reference()  # warm-up
    ours_s, theirs_s = [], []
    for _ in range(repeats):
        ours_s.append(seconds(ours))
        theirs_s.append(seconds(reference))
    ours_t, theirs_t = batch / statistics.median(ours_s), batch / statistics.median(theirs_s)
    return {"model": arch, "input": "x".join(map(str, shape)), "batch": batch, "ours": ours_t,
            "theirs": theirs_t, "ratio": ours_t / theirs_t}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import torchattacks

    cases = [("smallcnn", (1, 28, 28), 256), ("preact_resnet18", (3, 32, 32), 32)]
    rows = [measure(*case, repeats=args.repeats) for case in cases]
    print(f"PGD-10, torchattacks {torchattacks.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU")
    print("| model | input | batch | robustviz (img/s) | torchattacks (img/s) | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['batch']} | {r['ours']:.0f} | {r['theirs']:.0f} | "
              f"{r['ratio']:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
