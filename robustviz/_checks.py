"""Input checks shared by the whole package.

Every public entry point that takes images, labels or an epsilon calls these, so
the classic mistakes (images in 0-255, eps in 0-255 units, labels out of range)
fail early with a message that says what to do instead.
"""

from __future__ import annotations

import torch

_RANGE_TOLERANCE = 1e-6


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating tensor with values in [0, 1].

    Example:
        >>> check_images(torch.rand(2, 1, 28, 28))
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} has dtype {x.dtype}; robustviz expects float images in [0, 1] "
            "(convert uint8 images with x.float() / 255)"
        )
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        hint = " (they look like 0-255 pixels: divide by 255)" if hi > 1.5 else ""
        raise ValueError(
            f"{name} must lie in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]{hint}. "
            "Normalisation belongs inside the model, not in the data."
        )


def check_eps(eps: float, name: str = "eps", norm: str = "linf", dim: int | None = None) -> float:
    """Return ``eps`` as a float after checking it is a budget in [0, 1] pixel units.

    An L-inf budget above 1 covers the whole [0, 1] box, so it is almost surely in 0-255
    units. An L2 budget may exceed 1 (MNIST's usual L2 budget is 2.0), but not the diagonal
    of the box, ``sqrt(dim)`` for ``dim`` pixel values per sample (unchecked without ``dim``).

    Args:
        norm: ``"linf"`` or ``"l2"``.
        dim: values per sample (e.g. 784 for MNIST), for the L2 bound.

    Example:
        >>> check_eps(8 / 255)
        0.03137254901960784
        >>> check_eps(2.0, norm="l2", dim=784)
        2.0
    """
    eps = float(eps)
    if eps < 0:
        raise ValueError(f"{name} must be >= 0, got {eps}")
    if norm == "l2":
        largest = dim ** 0.5 if dim else float("inf")
        if eps > largest:
            raise ValueError(
                f"L2 {name}={eps:g} is larger than the diagonal of the [0, 1] box ({largest:.4g}); robustviz "
                f"measures eps in [0, 1] pixel units. If you meant {eps:g}/255, pass {name}={eps / 255:.5f}."
            )
        return eps
    if eps > 1:
        raise ValueError(
            f"{name}={eps:g} is larger than 1, but robustviz measures eps in [0, 1] pixel units. "
            f"If you meant {eps:g}/255, pass {name}={eps:g}/255 = {eps / 255:.5f}."
        )
    return eps


def check_labels(y: torch.Tensor, num_classes: int, name: str = "y") -> None:
    """Raise ``ValueError`` unless ``y`` holds integer class indices in [0, num_classes).

    Example:
        >>> check_labels(torch.tensor([0, 3, 9]), num_classes=10)
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D [B], got shape {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{name} has labels in [{int(y.min())}, {int(y.max())}] but the model has "
            f"{num_classes} classes (valid labels: 0..{num_classes - 1})"
        )


def check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` and ``y`` have the same batch size."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x has {x.shape[0]} samples but y has {y.shape[0]} labels; they must match"
        )


def unknown_name_error(kind: str, name: str, known: list[str] | tuple[str, ...]) -> ValueError:
    """Build the error for an unknown registry key, listing the valid ones."""
    return ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(known))}")
