"""Guided Complement Entropy (GCE): flatten the wrong-class distribution, guided by ``p_g ** alpha``.

Paper: Chen et al. 2019, https://arxiv.org/abs/1903.09799. Formulas and pitfalls: README.md
in this folder, "The formulas" and "Pitfalls".

Cross-entropy only pushes the true-class probability ``p_g`` up; it does not care how the
left-over mass ``1 - p_g`` is spread over the ``K - 1`` wrong classes. GCE flattens that
*complement distribution*

    q_j = p_j / (1 - p_g)  for j != g     (= softmax of the logits with z_g removed)

and weights the flattening by a *guiding factor* ``p_g ** alpha``, so one term both raises
the true class and neutralises the wrong ones. Per sample, in the minimisable sign of the
official code (Eq. 2 of the paper, normalised; README.md, "The formulas"):

    loss_i = p_g ** alpha * sum_{j != g} q_j log q_j / log(K - 1)     in [-1, 0]

-1: the model is certain (``p_g = 1``) and the complement is flat; 0: ``p_g = 0`` or a
one-hot complement. The name is spelled out because "GCE" in most public code means
*Generalized* Cross Entropy (Zhang & Sabuncu 2018), an unrelated noisy-label loss.

Example:
    >>> logits = torch.zeros(4, 10)
    >>> round(float(guided_complement_entropy(logits, torch.tensor([0, 1, 2, 3]))), 6)
    -0.464159
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..._checks import check_labels
from ..._precision import at_least_float32

DEFAULT_ALPHA = 1 / 3  # the official MNIST value (0.333)
REDUCTIONS = ("mean", "sum", "none")

# The three stabilising constants of the official code, in order of appearance (used only with
# official=True; README.md, "Confidence ceiling of the official epsilons").
OFFICIAL_COMPLEMENT_EPS = 1e-7  # added to 1 - p_g before dividing
OFFICIAL_GUIDE_EPS = 1e-7  # added to p_g before raising it to alpha
OFFICIAL_LOG_EPS = 1e-10  # added to q inside the log


def guided_complement_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    alpha: float = DEFAULT_ALPHA,
    official: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """The GCE loss (to minimise) of a batch of logits, per sample or reduced.

    ``loss_i = p_g ** alpha * sum_{j != g} q_j log q_j / log(K - 1)``, in [-1, 0].

    Default, the exact and stable form (README.md, "Numerics"): the guiding factor is
    ``exp(alpha * log_softmax(z)_g)`` and ``log q`` is the log-softmax of the logits with
    the target masked out, so nothing is divided by ``1 - p_g`` and no epsilon is needed.
    Normaliser ``log(K - 1)`` [inferred from the paper; README.md, "Normaliser"]. The loss
    decreases monotonically as the true-class margin grows (flat complement).

    ``official=True`` reproduces the authors' MNIST code: explicit softmax,
    ``q = p / (1 - p_g + 1e-7)``, guiding factor ``(p_g + 1e-7) ** alpha``,
    ``log(q + 1e-10)`` and normaliser ``log K`` (the code hard-codes ``K = 10``; here
    ``K`` is the real number of classes). The first epsilon makes that loss climb back
    towards 0 once ``1 - p_g`` falls below about 1e-7 (a logit margin of about 10 for
    ``K = 10``): it is non-monotone in confidence (README.md, "Confidence ceiling of the
    official epsilons"). Use it only to reproduce the paper.

    Args:
        logits: class scores ``[B, K]`` with ``K >= 3``. bf16/fp16 inputs are computed in
            float32; float64 stays float64.
        y: true labels ``[B]`` (int64, in ``[0, K)``).
        alpha: exponent of the guiding factor ``p_g ** alpha`` (>= 0, no unit). 0 gives plain
            normalised complement entropy, which cannot raise the true class (README.md,
            "Complement entropy alone cannot learn").
        official: use the official code's epsilons and ``log K`` normaliser.
        reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (``[B]``).

    Returns:
        a scalar, or ``[B]`` for ``reduction="none"``; values in ``[-1, 0]``.

    Example:
        >>> round(float(guided_complement_entropy(torch.zeros(4, 10), torch.tensor([0, 1, 2, 3]))), 6)
        -0.464159
    """
    num_classes = _check_inputs(logits, y)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of: {', '.join(REDUCTIONS)}")
    logits = at_least_float32(logits)
    if official:
        per_sample = _official_per_sample(logits, y, alpha, num_classes)
    else:
        per_sample = -_guiding_factor(logits, y, alpha) * _normalized_complement_entropy(logits, y)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def guiding_factor(logits: torch.Tensor, y: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """The guiding factor ``p_g ** alpha`` per sample, computed as ``exp(alpha * log p_g)``.

    The log form has a finite gradient even where ``p_g`` underflows to 0, unlike
    ``p_g ** alpha`` whose derivative is infinite at 0 for ``alpha < 1`` (README.md, "Numerics").

    Args:
        logits: ``[B, K]``, ``K >= 3``.
        y: true labels ``[B]`` (int64).
        alpha: the exponent, ``>= 0``.
    Returns:
        ``[B]`` values in [0, 1].

    Example:
        >>> guiding_factor(torch.zeros(1, 8), torch.tensor([0]), alpha=1 / 3)
        tensor([0.5000])
    """
    _check_inputs(logits, y)
    return _guiding_factor(at_least_float32(logits), y, alpha)


def _guiding_factor(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    log_p_true = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    return torch.exp(alpha * log_p_true)


def complement_log_probs(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The log complement distribution ``log q``: log-softmax over the non-target logits, ``-inf`` at the target.

    ``q`` does not depend on the true logit ``z_g`` at all.

    Args:
        logits: ``[B, K]``, ``K >= 3``.
        y: true labels ``[B]`` (int64).
    Returns:
        ``[B, K]`` log-probabilities.

    Example:
        >>> complement_log_probs(torch.zeros(1, 3), torch.tensor([0])).exp()
        tensor([[0.0000, 0.5000, 0.5000]])
    """
    _check_inputs(logits, y)
    return _complement_log_probs(at_least_float32(logits), y)


def _complement_log_probs(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    target = F.one_hot(y, logits.shape[1]).bool()
    return F.log_softmax(logits.masked_fill(target, float("-inf")), dim=1)


def complement_distribution(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The wrong-class distribution ``q_j = p_j / (1 - p_g)``, exactly 0 at the target.

    Useful for the sorted-probability bar charts: GCE makes these rows flat.

    Args:
        logits: ``[B, K]``, ``K >= 3``.
        y: true labels ``[B]`` (int64).
    Returns:
        ``[B, K]``, rows summing to 1.

    Example:
        >>> complement_distribution(torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([0]))
        tensor([[0.0000, 0.5000, 0.5000]])
    """
    _check_inputs(logits, y)
    return _complement_log_probs(at_least_float32(logits), y).exp()


def normalized_complement_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The normalised complement entropy ``H(q) / log(K - 1)`` per sample (1 = perfectly flat complement).

    ``H(q) = -sum_{j != g} q_j log q_j`` is COT's complement entropy; this is the quantity to
    histogram when comparing GCE with cross-entropy models (README.md, "Evaluate it honestly").

    Args:
        logits: ``[B, K]``, ``K >= 3``.
        y: true labels ``[B]`` (int64).
    Returns:
        ``[B]`` values in [0, 1].

    Example:
        >>> normalized_complement_entropy(torch.zeros(2, 5), torch.tensor([0, 1]))
        tensor([1., 1.])
    """
    _check_inputs(logits, y)
    return _normalized_complement_entropy(at_least_float32(logits), y)


def _normalized_complement_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    num_classes = logits.shape[1]
    log_q = _complement_log_probs(logits, y)
    # At the target q = 0 and log q = -inf; zeroing log q there (rather than the product)
    # keeps both the value and the gradient of 0 * (-inf) at 0 instead of NaN.
    target = F.one_hot(y, num_classes).bool()
    q_log_q = log_q.exp() * log_q.masked_fill(target, 0.0)
    return -q_log_q.sum(dim=1) / math.log(num_classes - 1)


def _official_per_sample(logits: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int) -> torch.Tensor:
    """The official code's per-sample loss ``[B]``, with its epsilons and the normaliser ``log K``."""
    probs = F.softmax(logits, dim=1)
    p_true = probs.gather(1, y[:, None])
    q = probs / (1 - p_true + OFFICIAL_COMPLEMENT_EPS)
    not_target = 1.0 - F.one_hot(y, num_classes).to(probs.dtype)
    q_log_q = q * torch.log(q + OFFICIAL_LOG_EPS) * not_target
    guide = (p_true.squeeze(1) + OFFICIAL_GUIDE_EPS) ** alpha
    return guide * q_log_q.sum(dim=1) / math.log(num_classes)


def _check_inputs(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Check shapes and labels; return the number of classes ``K`` (>= 3)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a [B, K] tensor, got {shape}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    num_classes = logits.shape[1]
    if num_classes < 3:
        raise ValueError(
            f"guided complement entropy needs K >= 3 classes, got K={num_classes}: with K=2 the "
            "complement has one class, its entropy is always 0 and log(K-1) = 0. "
            "Use cross-entropy for binary problems."
        )
    check_labels(y, num_classes, "y")
    if y.shape[0] != logits.shape[0]:
        raise ValueError(f"logits has {logits.shape[0]} rows but y has {y.shape[0]} labels; they must match")
    return num_classes
