"""What the evaluation's defaults cost: attack batch size and precision.

Two questions, each answered on robustviz's quick-profile models (trained once into the run
cache, as the notebooks do) with PGD-20 on the first ``--n`` mnist-mini test images:

* **Attack batch size** (``ATTACK_BATCH_SIZE``): seconds and peak memory (the process's
  peak resident memory, ``VmHWM`` reset just before, above what it held then) of ``evaluate_robustness`` at batch
  128 and 500. Every configuration runs in a fresh process, so one's peak cannot hide
  another's.
* **Precision** (``amp``): robust accuracy and seconds in float32 and under autocast
  (bf16 on the CPU; bf16 and fp16 on a CUDA GPU). The difference in accuracy is what a
  half-precision evaluation misreports.

Run: ``python bench/eval_settings.py`` (writes a Markdown table to stdout; ``--results`` for
the run cache, default ``results/``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

import torch

ONE_RUN = r"""
import json, sys, time
import torch
from robustviz.app import runs
from robustviz.evaluate import evaluate_robustness

def held_mb():
    status = open("/proc/self/status").read().splitlines()
    return {key: int(next(l for l in status if l.startswith(key)).split()[1]) / 1024 for key in ("VmRSS", "VmHWM")}

recipe, batch, amp, results, device = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[5], sys.argv[6]
n = int(sys.argv[4])
course = runs.setup("quick", results=results, device=device, verbose=False)
model = course.train(recipe, progress=False)[0]
test = course.test_split(course.data(), n)
open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from the current RSS
before = held_mb()["VmRSS"]
started = time.perf_counter()
report = evaluate_robustness(model, test.x, test.y, eps=(0.1, 0.2, 0.3), attacks=("pgd-20",), batch_size=batch,
                             amp=amp, progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"recipe": recipe, "batch": batch, "amp": amp, "seconds": seconds,
                  "peak_mb": held_mb()["VmHWM"] - before, "clean": report.clean_acc,
                  "pgd20": {str(eps): row["PGD-20"] for eps, row in report.results.items()}}))
"""


def run_once(recipe: str, batch: int, amp: str, n: int, results: str, device: str) -> dict:
    """One evaluation in a fresh Python process; its JSON line."""
    out = subprocess.run([sys.executable, "-c", ONE_RUN, recipe, str(batch), amp, str(n), results, device],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="run cache (models are trained there if missing)")
    parser.add_argument("--n", type=int, default=500, help="test images")
    parser.add_argument("--recipes", nargs="+", default=["ce", "pgd_at"])
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = ["bf16", "fp16"] if device == "cuda" else ["bf16"]
    print(f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"device {device}, torch {torch.__version__}; PGD-20 on {args.n} mnist-mini test images, eps 0.1/0.2/0.3.\n")
    print("| recipe | attack batch | seconds | peak memory above start (MB) |")
    print("|---|---:|---:|---:|")
    for recipe in args.recipes:
        for batch in (128, 500):
            row = run_once(recipe, batch, "off", args.n, args.results, device)
            print(f"| {recipe} | {batch} | {row['seconds']:.1f} | {row['peak_mb']:.0f} |", flush=True)
    print("\n| recipe | precision | seconds | PGD-20 at 0.1 / 0.2 / 0.3 (%) | change from float32 (points) |")
    print("|---|---|---:|---|---|")
    for recipe in args.recipes:
        base = None
        for amp in ["off", *precisions]:
            row = run_once(recipe, 128, amp, args.n, args.results, device)
            accs = [100 * row["pgd20"][k] for k in sorted(row["pgd20"], key=float)]
            base = base or accs
            change = " / ".join(f"{a - b:+.1f}" for a, b in zip(accs, base))
            label = "float32" if amp == "off" else amp
            print(f"| {recipe} | {label} | {row['seconds']:.1f} | {' / '.join(f'{a:.1f}' for a in accs)} | "
                  f"{change if amp != 'off' else '-'} |", flush=True)


if __name__ == "__main__":
    main()
