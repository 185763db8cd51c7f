"""Projected Gradient Descent (Madry et al. 2018), L-inf and L2, with random restarts."""

from __future__ import annotations

import torch
from torch import nn

from .core import (
    check_norm,
    eval_mode,
    input_gradient,
    l2_normalize,
    linf_bounds,
    make_generator,
    prepare_inputs,
    project_l2,
    random_start,
    signed_step,
)
from .losses import AttackLoss, resolve_loss


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    loss: str | AttackLoss = "ce",
    seed: int | None = None,
    early_stop: bool = False,
    target: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Maximise ``loss`` within the eps-ball by ``steps`` projected gradient steps.

    L-inf step: ``x <- Proj(x + step_size * sign(grad))``; L2 step:
    ``x <- Proj(x + step_size * grad / ||grad||_2)``. With ``restarts > 1`` every sample
    keeps its worst case over the restarts: a misclassifying point beats a correctly
    classified one, then the higher loss wins.

    Args:
        model: any module returning class scores ``[B, K]`` for inputs in [0, 1].
        x: inputs ``[B, ...]`` in [0, 1]; y: labels ``[B]``.
        eps: budget in [0, 1] pixel units (L-inf: e.g. 8/255; L2: e.g. 0.5).
        steps: gradient steps per restart.
        step_size: step length; default ``2.5 * eps / steps`` (Madry et al.).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform random point of the ball (else from ``x``).
        restarts: independent runs; the per-sample worst case is returned.
        loss: ``"ce"``, ``"margin"``, ``"dlr"`` or a per-sample loss ``(scores, y) -> [B]``.
        seed: seed for the random starts (drawn on the CPU: same numbers on any device).
        early_stop: stop updating a sample as soon as it is misclassified (it is already
            an adversarial example inside the ball). Saves time in evaluation and does not
            change which samples are broken; it does change ``x_adv`` for those samples.
        target: optional target classes ``[B]``: a *targeted* attack that minimises
            ``loss(scores, target)`` (for ``"margin"``: maximises ``s_t - max_{j != t} s_j``)
            instead of maximising ``loss(scores, y)``. Early stopping and restarts still
            judge success by misclassification of ``y``, as an evaluation should.
        start: the first iterate ``[B, ...]`` instead of ``x`` or a random point (one run:
            ``restarts`` must be 1); every step still projects onto the ball around ``x``.

    Returns:
        ``x_adv`` inside the eps-ball and [0, 1], on ``x``'s device and dtype.

    Example:
        >>> x_adv = pgd(model, x, y, eps=0.3, steps=20, seed=0)  # doctest: +SKIP
    """
    check_norm(norm)
    if steps < 0 or restarts < 1:
        raise ValueError(f"need steps >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}")
    if start is not None and (restarts > 1 or start.shape != x.shape):
        raise ValueError(f"start must have the shape of x {tuple(x.shape)} and restarts must be 1, got "
                         f"{tuple(start.shape)} and restarts={restarts}")
    x_work, y_work, eps = prepare_inputs(model, x, y, eps, norm)
    loss_fn = resolve_loss(loss)
    loss_labels = y_work
    if target is not None:
        _, loss_labels, _ = prepare_inputs(model, x, target, eps, norm)
        loss_fn = _negated(loss_fn)
    settings = dict(eps=eps, steps=steps, norm=norm, random_start=random_start,
                    step_size=2.5 * eps / max(steps, 1) if step_size is None else float(step_size),
                    loss_fn=loss_fn, generator=make_generator(seed), early_stop=early_stop,
                    start=None if start is None else start.detach().to(device=x_work.device, dtype=x_work.dtype))
    with eval_mode(model):
        best = _pgd_run(model, x_work, y_work, loss_labels, **settings)
        if restarts > 1:
            best_key = worst_case_key(model, best, y_work, loss_labels, loss_fn)
            for _ in range(restarts - 1):
                candidate = _pgd_run(model, x_work, y_work, loss_labels, **settings)
                candidate_key = worst_case_key(model, candidate, y_work, loss_labels, loss_fn)
                best, best_key = keep_worst_case(best, best_key, candidate, candidate_key)
    return best.detach().to(device=x.device, dtype=x.dtype)


def _negated(loss_fn: AttackLoss) -> AttackLoss:
    def targeted_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -loss_fn(scores, target)

    return targeted_loss


def _pgd_run(model, x, y, loss_labels, eps, steps, step_size, norm, random_start, loss_fn, generator, early_stop,
             start=None):
    """One PGD run from a (random) start; returns the final iterate ``[B, ...]``.

    The loss is ``loss_fn(scores, loss_labels)`` (the labels, or the targets of a targeted
    attack); ``early_stop`` drops a sample once it is misclassified with respect to ``y``.
    """
    x_adv = _start(x, eps, norm, random_start, generator) if start is None else start.clone()
    if not early_stop:
        for _ in range(steps):
            grad, _ = input_gradient(model, x_adv, loss_labels, loss_fn)
            x_adv = ascent_step(x_adv, x, grad, eps, step_size, norm)
        return x_adv
    active = torch.arange(x.shape[0], device=x.device)
    for _ in range(steps):
        grad, scores = input_gradient(model, x_adv[active], loss_labels[active], loss_fn)
        still_correct = scores.argmax(dim=1) == y[active]
        active, grad = active[still_correct], grad[still_correct]
        if active.numel() == 0:
            break
        x_adv[active] = ascent_step(x_adv[active], x[active], grad, eps, step_size, norm)
    return x_adv


def _start(x, eps, norm, start_random, generator):
    return random_start(x, eps, norm, generator) if start_random else x.clone()


def ascent_step(x_adv, x, grad, eps, step_size, norm):
    """One ascent step followed by the projection onto the ball and [0, 1]."""
    if norm == "linf":
        return signed_step(x_adv, grad, step_size, *linf_bounds(x, eps))
    return project_l2(x_adv + step_size * l2_normalize(grad), x, eps)


@torch.no_grad()
def worst_case_key(model, x_adv, y, loss_labels, loss_fn) -> torch.Tensor:
    """Order candidate adversarial examples per sample ``[B]``: misclassified (+inf) first, then by loss."""
    scores = model(x_adv)
    loss = loss_fn(scores, loss_labels).float()
    wrong = scores.argmax(dim=1) != y
    return torch.where(wrong, torch.full_like(loss, float("inf")), loss)


def keep_worst_case(best, best_key, candidate, candidate_key):
    """Per sample, keep whichever of ``best``/``candidate`` has the larger key. Returns ``(x, key)``."""
    better = (candidate_key > best_key).view(-1, *([1] * (best.dim() - 1)))
    return torch.where(better, candidate, best), torch.maximum(best_key, candidate_key)
