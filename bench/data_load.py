"""How long does ``robustviz.data.load("mnist-mini")`` take? (target: under a second)

Run: ``python bench/data_load.py``.
"""

from __future__ import annotations

import statistics
import time

from robustviz import data


def main(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        data.load("mnist-mini")
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(f"load('mnist-mini'): median {1000 * median:.0f} ms over {repeats} loads "
          f"(min {1000 * min(times):.0f} ms, max {1000 * max(times):.0f} ms)")
    return median


if __name__ == "__main__":
    main()
