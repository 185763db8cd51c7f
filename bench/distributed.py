"""Time per epoch of one process against N processes under torchrun, on the same work.

``python bench/distributed.py [--methods ce pgd_at] [--procs 1 2] [--n-train 4000] [--device cpu]``

For every method and process count this launches
``torchrun --standalone --nproc_per_node=P bench/distributed.py --worker ...``: each process
trains the method's quick recipe (smallcnn, mnist-mini, global batch 128) for one epoch with
``--threads`` threads, through ``robustviz.train.fit``. One more row runs one process with
``P_max * threads`` threads, the usual way to use the same cores. Reported per row: seconds of
the epoch (the history's, training and the held-out monitor), images per second, the speed-up
over one process with ``--threads`` threads, and the seconds spent in the gradient all-reduce
(``robustviz.distributed.average_gradients``, timed around each call; it includes the wait
for the slowest rank). The markdown table is printed for docs/benchmarks.md.

With ``--device cuda`` each process takes one GPU (``LOCAL_RANK``): run it on a multi-GPU
node with ``--procs 1 2 4 8`` to measure GPU scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One rank's run: one epoch of ``args.method``; rank 0 writes the timings to ``args.out``."""
    import torch

    from robustviz import data, distributed, methods, models
    from robustviz.train import fit, input_statistics
    from robustviz.train import loop as fit_module

    distributed.init_from_env()
    torch.set_num_threads(args.threads)
    bundle = data.load("mnist-mini", n_train=args.n_train, seed=0)
    config = methods.get(args.method).config("mnist", "quick")
    mean, std = input_statistics(config, bundle)
    device = distributed.device() if args.device == "cuda" else torch.device("cpu")
    model = models.build(config.model, 10, 1, feat_dim=config.feat_dim, mean=mean, std=std, seed=0).to(device)
    spent = {"seconds": 0.0, "calls": 0}
    average = distributed.average_gradients

    def timed_average(*call_args, **kwargs):
        started = time.perf_counter()
        average(*call_args, **kwargs)
        spent["seconds"] += time.perf_counter() - started
        spent["calls"] += 1

    fit_module.distributed.average_gradients = timed_average
    history = fit(model, bundle, args.method, epochs=1, progress=False)
    if distributed.is_main():
        record = history.last
        images = record["step"] * config.batch_size
        Path(args.out).write_text(json.dumps({"seconds": record["seconds"], "images": images,
                                              "allreduce_s": spent["seconds"], "steps": record["step"]}))


def launch(method: str, procs: int, threads: int, args) -> dict:
    """Run the worker under torchrun with ``procs`` processes; returns rank 0's timings."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "timings.json"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   OMP_NUM_THREADS=str(threads))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                   __file__, "--worker", "--method", method, "--threads", str(threads), "--n-train",
                   str(args.n_train), "--device", args.device, "--out", str(out)]
        subprocess.run(command, check=True, env=env, capture_output=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["ce", "pgd_at"])
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="threads per process (default 1)")
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print("| recipe | processes x threads | s / epoch | img/s | speed-up | all-reduce s / epoch |")
    print("|---|---|---:|---:|---:|---:|")
    for method in args.methods:
        base = None
        runs = [(p, args.threads) for p in args.procs]
        if args.device == "cpu" and max(args.procs) > 1:
            runs.append((1, max(args.procs) * args.threads))
        for procs, threads in runs:
            timing = launch(method, procs, threads, args)
            base = base or timing["seconds"]
            print(f"| {method} | {procs} x {threads} | {timing['seconds']:.1f} | "
                  f"{timing['images'] / timing['seconds']:,.0f} | {base / timing['seconds']:.2f}x | "
                  f"{timing['allreduce_s']:.2f} ({100 * timing['allreduce_s'] / timing['seconds']:.0f} %) |",
                  flush=True)


if __name__ == "__main__":
    main()
