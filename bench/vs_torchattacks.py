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


def seconds(fn, device: str = "cpu") -> float:
    """Wall seconds of ``fn()``; on CUDA the queued kernels are waited for before and after."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(arch: str, shape: tuple[int, ...], batch: int, repeats: int, steps: int = 10, device: str = "cpu",
            reference: bool = True) -> dict:
    """Images per second of robustviz's PGD and (``reference=True``) torchattacks' on one model and batch.

    Example:
        >>> measure("smallcnn", (1, 28, 28), batch=16, repeats=1, reference=False)["ours"] > 0  # doctest: +SKIP
        True
    """
    torch.manual_seed(0)
    model = models.build(arch, 10, shape[0], seed=0).to(device).eval()
    x, y = torch.rand(batch, *shape, device=device), torch.randint(0, 10, (batch,), device=device)
    eps = 0.3 if shape[0] == 1 else 8 / 255
    step_size = 2.5 * eps / steps
    ours = lambda: pgd(model, x, y, eps, steps=steps, step_size=step_size, seed=0)  # noqa: E731
    runs = {"ours": ours}
    if reference:
        import torchattacks

        theirs = torchattacks.PGD(model, eps=eps, alpha=step_size, steps=steps, random_start=True)
        runs["theirs"] = lambda: theirs(x, y)
    for fn in runs.values():
        fn()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved
        for name, fn in runs.items():
            times[name].append(seconds(fn, device))
    row = {"model": arch, "input": "x".join(map(str, shape)), "batch": batch}
    row.update({name: batch / statistics.median(t) for name, t in times.items()})
    if reference:
        row["ratio"] = row["ours"] / row["theirs"]
    return row


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
