"""Precision of loss terms: half precision in, float32 out; float64 stays float64.

Under autocast a network returns bf16/fp16 scores and features. Exponentials, squared
distances, logs of small probabilities and KL terms lose their meaning in half precision
(they underflow to 0 or round away the differences that carry the gradient), so every loss
term computes in at least float32. Inputs in float64 (gradient checks, finite differences)
are kept in float64 rather than silently rounded.
"""

from __future__ import annotations

import torch


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is in a lower precision; float32 and float64 unchanged.

    Example:
        >>> at_least_float32(torch.ones(2, dtype=torch.bfloat16)).dtype
        torch.float32
        >>> at_least_float32(torch.ones(2, dtype=torch.float64)).dtype
        torch.float64
    """
    return t if t.dtype in (torch.float32, torch.float64) else t.float()
