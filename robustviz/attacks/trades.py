"""The TRADES inner maximisation (Zhang et al. 2019, Algorithm 1): the point of the eps-ball
whose prediction differs most, in KL divergence, from the clean prediction.

    x' = argmax_{||x' - x||_inf <= eps}  KL( p(x) || p(x') ),    p = softmax(f)

It needs no label: it pushes the prediction away from the model's own clean prediction.
Starting *at* ``x`` would not move at all (the KL is minimal there, its gradient is 0), so
TRADES starts from ``x + 0.001 * N(0, I)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..geometry import kl_per_sample
from .core import eval_mode, make_generator, prepare_inputs, project_linf
from .pgd import pgd


def trades_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    init_std: float = 0.001,
    seed: int | None = None,
) -> torch.Tensor:
    """L-inf PGD ascent on ``KL(p(x) || p(x'))`` with ``p(x)`` held fixed.

    Step: ``x' <- clip_[0,1](clip_ball(x' + step_size * sign(grad_x' KL)))``. The clean
    prediction ``p(x)`` is computed once, in eval mode, and is a constant.

    Args:
        model: any module returning class scores ``[B, K]`` for inputs in [0, 1].
        x: inputs ``[B, ...]`` in [0, 1].
        y: labels ``[B]``; checked against the model but not used by the KL objective.
        eps: L-inf budget in [0, 1] pixel units (TRADES: 0.031 CIFAR, 0.3 MNIST;
            robustviz uses exactly 8/255 on CIFAR).
        steps: ascent steps (TRADES: 10 on CIFAR, 40 on MNIST).
        step_size: step in [0, 1] units; default ``2.5 * eps / steps`` like ``pgd``
            (= eps/4 for 10 steps, which is TRADES' CIFAR 2/255 at eps 8/255).
        init_std: standard deviation of the Gaussian start (TRADES: 0.001). The start is
            projected onto the ball and [0, 1] [robustviz choice: the official code only
            clips after the first step, which matters only when ``steps = 0``].
        seed: seed for the start noise, drawn on the CPU (same numbers on any device);
            ``None`` uses the global RNG (what training does: ``fit`` reseeds it per epoch).

    Returns:
        ``x_adv`` inside the eps-ball and [0, 1], on ``x``'s device and dtype. The model's
        train/eval mode is restored and BatchNorm statistics are not updated.

    Example:
        >>> x_adv = trades_attack(model, x, y, eps=0.3, steps=40, step_size=0.01, seed=0)  # doctest: +SKIP
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if init_std < 0:
        raise ValueError(f"init_std must be >= 0, got {init_std}")
    x_work, _, eps = prepare_inputs(model, x, y, eps)
    with eval_mode(model), torch.no_grad():
        clean_logits = model(x_work)

    def kl_to_clean(scores: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return kl_per_sample(clean_logits, scores)

    start = project_linf(gaussian_start(x_work, init_std, make_generator(seed)), x_work, eps)
    return pgd(model, x, y, eps, steps=steps, step_size=step_size, random_start=False, loss=kl_to_clean, start=start)


def gaussian_start(x: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """``x + std * N(0, I)`` (not projected). With a generator the noise is drawn on the CPU."""
    if generator is not None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    else:
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device)
    return x + std * noise
