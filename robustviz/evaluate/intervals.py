"""How sure is an accuracy measured on n images? The Wilson score interval.

An accuracy of 70 % on 200 test images could be anything from about 63 % to 76 % on the next
200. The Wilson interval (Wilson 1927) is the standard 95 % interval for a proportion; unlike
``p +- 1.96 sqrt(p(1-p)/n)`` it stays inside [0, 1] and is honest at 0 % and 100 %:

    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2),   z = 1.96 for 95 %.

Two accuracies whose intervals overlap widely are not shown to differ by that evaluation.
"""

from __future__ import annotations

import math


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of a proportion ``accuracy`` measured on ``n`` samples.

    Args:
        accuracy: the measured fraction in [0, 1].
        n: the number of samples it was measured on (>= 1).
        z: the normal quantile (1.96: a 95 % interval).

    Example:
        >>> low, high = wilson_interval(0.7, 200)
        >>> round(low, 3), round(high, 3)
        (0.633, 0.759)
    """
    if n < 1:
        raise ValueError(f"an interval needs at least one sample, got n={n}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
    scale = 1 + z * z / n
    centre = (accuracy + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def format_accuracy(accuracy: float, n: int) -> str:
    """``"70.0 % [63.3, 75.9] (n = 200)"``: the accuracy in percent with its 95 % Wilson interval.

    Example:
        >>> format_accuracy(0.7, 200)
        '70.0 % [63.3, 75.9] (n = 200)'
    """
    low, high = wilson_interval(accuracy, n)
    return f"{100 * accuracy:.1f} % [{100 * low:.1f}, {100 * high:.1f}] (n = {n})"
