"""Run every benchmark (``make bench``); paste the output into docs/benchmarks.md."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data_load  # noqa: E402
import eval_settings  # noqa: E402
import pgd_overhead  # noqa: E402
import vs_torchattacks  # noqa: E402

if __name__ == "__main__":
    print(f"machine: {platform.platform()}, {platform.processor() or 'cpu'}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}\n")
    data_load.main()
    print()
    pgd_overhead.main(["--repeats", "5"])
    print()
    vs_torchattacks.main(["--repeats", "5"])
    print()
    eval_settings.main([])
