"""What every attack shares: the contract checks, eval mode, gradients and projections.

The contract (DESIGN.md): attacks take the model, ``x`` in [0, 1], ``y`` and ``eps``
in [0, 1] units; run the model in eval mode (so BatchNorm statistics are never
updated) and restore the caller's mode; return ``x_adv`` inside the eps-ball and
[0, 1], on ``x``'s device and dtype.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar

import torch
from torch import nn

from .._checks import check_batch, check_eps, check_inputs
from ..models.base import eval_mode  # noqa: F401  (re-exported: every attack runs under it)
from .losses import AttackLoss

NORMS = ("linf", "l2")

# Samples per attack call when an evaluation walks through a test set. An attack keeps the
# activations of a forward pass for its backward pass: at 128 MNIST images that is a few
# hundred MB less than at 500, which keeps a CPU notebook inside Binder's 2 GB, at no cost
# in speed on a CPU (docs/benchmarks.md). On a GPU pass a larger ``batch_size``.
ATTACK_BATCH_SIZE = 128


ATTACK_BN_MODES = ("eval", "train")


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """BatchNorm layers normalise with the statistics of the batch at hand, as in train mode,
    while their running statistics stay untouched, even inside ``eval_mode``.

    For training-time attacks crafted "in train mode" as some papers' code does (Wong et al.,
    Rice et al., ClusTR's QTRADES), without the side effect of that code: its crafting
    passes also moved the running statistics. Nothing else changes (dropout stays as the
    attack sets it). The running statistics are put back on exit.
    """
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            saved.append((module, module.running_mean, module.running_var))
            module.running_mean, module.running_var = None, None
    try:
        yield model
    finally:
        for module, mean, var in saved:
            module.running_mean, module.running_var = mean, var


def crafting_batchnorm(model: nn.Module, attack_bn: str) -> AbstractContextManager:
    """The BatchNorm mode of a training-time attack: ``"eval"`` (running statistics, the
    attack contract) or ``"train"`` (batch statistics, ``batch_statistics``)."""
    if attack_bn not in ATTACK_BN_MODES:
        raise ValueError(f"attack_bn must be one of {ATTACK_BN_MODES}, got {attack_bn!r}")
    return batch_statistics(model) if attack_bn == "train" else nullcontext(model)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


_INPUTS_CHECKED: ContextVar[bool] = ContextVar("robustviz_inputs_checked", default=False)


@contextmanager
def checked_inputs() -> Iterator[None]:
    """Inside, attacks trust that ``x`` is in [0, 1] and ``y`` holds valid labels.

    Those two checks read values back from the device (a min, a max), which stalls a GPU. A
    training loop whose data was checked once when it was loaded (``fit``) crafts its
    training-time attacks inside this context; shapes and budgets are still checked.
    """
    token = _INPUTS_CHECKED.set(True)
    try:
        yield
    finally:
        _INPUTS_CHECKED.reset(token)


def prepare_inputs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf"
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Check the contract (``check_inputs``, or only the batch sizes inside ``checked_inputs``;
    ``eps`` for the given norm) and move ``x``, ``y`` to the model's device and dtype."""
    if _INPUTS_CHECKED.get():
        check_batch(x, y)
    else:
        check_inputs(model, x, y)
    eps = check_eps(eps, norm=norm, dim=x[0].numel() if x.shape[0] else None)
    device, dtype = model_device_dtype(model)
    return x.detach().to(device=device, dtype=dtype), y.to(device), eps


def input_gradient(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss_fn: AttackLoss
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``sum_i loss_fn(model(x_adv), y)_i`` with respect to ``x_adv``.

    Only the input gradient is computed: parameter gradients are neither computed nor
    accumulated into ``.grad``. Entries that are NaN or infinite (a model that outputs NaN)
    become 0, so an attack on such a model stays where it is instead of leaving [0, 1].

    Returns:
        ``(grad, scores)``: the gradient (shape of ``x_adv``) and the detached scores
        ``[B, K]`` of the same forward pass.
    """
    with torch.enable_grad():  # attacks also work when the caller is inside torch.no_grad()
        x_adv = x_adv.detach().requires_grad_(True)
        scores = model(x_adv)
        loss = loss_fn(scores, y)
        if loss.shape != y.shape:
            raise ValueError(f"attack loss must return one value per sample [B], got {tuple(loss.shape)}")
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
    return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0), scores.detach()


def linf_bounds(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise lower/upper bounds of the L-inf ball around ``x`` intersected with [0, 1]."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def clip_to(x_adv: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``x_adv`` clipped elementwise into ``[lower, upper]`` (e.g. the box of ``linf_bounds``)."""
    return torch.min(torch.max(x_adv, lower), upper)


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the L-inf ball of radius ``eps`` around ``x``, intersected with [0, 1]."""
    return clip_to(x_adv, *linf_bounds(x, eps))


def signed_step(
    x_adv: torch.Tensor, direction: torch.Tensor, step_size: float, lower: torch.Tensor, upper: torch.Tensor
) -> torch.Tensor:
    """One L-inf ascent step: ``clip(x_adv + step_size * sign(direction), lower, upper)``.

    The step of FGSM, BIM/PGD, MI-FGSM and the training attacks. ``direction`` is the loss's
    input gradient (or MI-FGSM's momentum); ``lower``/``upper`` come from ``linf_bounds(x, eps)``.

    Example:
        >>> x = torch.full((1, 3), 0.5)
        >>> signed_step(x, torch.tensor([[1.0, -2.0, 0.0]]), 0.25, *linf_bounds(x, 0.1))
        tensor([[0.6000, 0.4000, 0.5000]])
    """
    return clip_to(x_adv + step_size * direction.sign(), lower, upper)


def unprojected_step(x_start: torch.Tensor, direction: torch.Tensor, step_size: float) -> torch.Tensor:
    """``clip_[0,1](x_start + step_size * sign(direction))``: a signed step projected onto no eps-ball.

    Not an attack of the contract: from a start away from ``x`` (a random corner) the result
    can leave the ball around ``x``. SAT-R2/R3 take their training samples so, as their
    authors' code does; everywhere else use ``signed_step`` with ``linf_bounds``.

    Example:
        >>> unprojected_step(torch.tensor([[0.5, 0.95]]), torch.tensor([[1.0, 1.0]]), 0.1)
        tensor([[0.6000, 1.0000]])
    """
    return (x_start + step_size * direction.sign()).clamp(0.0, 1.0)


def l2_normalize(v: torch.Tensor) -> torch.Tensor:
    """Scale every sample of ``v`` ``[B, ...]`` to unit L2 norm (zero stays zero)."""
    norms = v.flatten(1).norm(dim=1).clamp_min(1e-12)
    return v / norms.view(-1, *([1] * (v.dim() - 1)))


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the L2 ball of radius ``eps`` around ``x``, then into [0, 1]."""
    delta = x_adv - x
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (eps / norms).clamp(max=1.0).view(-1, *([1] * (x.dim() - 1)))
    return (x + delta * factor).clamp(0.0, 1.0)


def random_start(
    x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None
) -> torch.Tensor:
    """A uniformly random point of the eps-ball around ``x`` (clipped to [0, 1]).

    Random numbers are drawn on the CPU when a generator is given, so a seeded attack
    gives the same start on CPU and GPU.
    """
    shape = x.shape
    if generator is not None:
        noise = torch.rand(shape, generator=generator, dtype=x.dtype).to(x.device)
    else:
        noise = torch.rand(shape, dtype=x.dtype, device=x.device)
    if norm == "linf":
        return (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)
    # L2: uniform in the ball = Gaussian direction times radius eps * u^(1/d).
    if generator is not None:
        direction = torch.randn(shape, generator=generator, dtype=x.dtype).to(x.device)
    else:
        direction = torch.randn(shape, dtype=x.dtype, device=x.device)
    dims = x[0].numel()
    radius = eps * noise.flatten(1)[:, 0].pow(1.0 / dims).view(-1, *([1] * (x.dim() - 1)))
    return project_l2(x + l2_normalize(direction) * radius, x, eps)


def make_generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
