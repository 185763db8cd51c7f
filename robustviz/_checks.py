"""Input checks shared by the whole package.

Every public entry point that takes images, labels, an epsilon, a device or training
settings calls these, so the classic mistakes (images in 0-255, NaN pixels, eps in 0-255
units, labels out of range, channels-last images, a GPU that is not there) fail early with
a message that says what to do instead. ``check_inputs`` bundles the checks of one call
(images, labels, their agreement with each other and with the model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real

import torch
from torch import nn

_RANGE_TOLERANCE = 1e-6


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating tensor of finite values in [0, 1].

    Example:
        >>> check_images(torch.rand(2, 1, 28, 28))
    """
    if not isinstance(x, torch.Tensor):
        hint = " (convert it with torch.from_numpy(x).float())" if type(x).__name__ == "ndarray" else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}{hint}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} has dtype {x.dtype}; robustviz expects float images in [0, 1] "
            "(convert uint8 images with x.float() / 255)"
        )
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())  # NaN anywhere makes both NaN
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} holds {bad} NaN or infinite value(s) out of {x.numel()}; robustviz needs finite pixel "
            "values in [0, 1]. Find where they come from (a division by zero in preprocessing, a corrupt "
            "file) or replace them, e.g. with torch.nan_to_num(x).clamp(0, 1)."
        )
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        hint = " (they look like 0-255 pixels: divide by 255)" if hi > 1.5 else ""
        raise ValueError(
            f"{name} must lie in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]{hint}. "
            "Normalisation belongs inside the model, not in the data."
        )


def check_eps(eps: float, name: str = "eps", norm: str = "linf", dim: int | None = None) -> float:
    """Return ``eps`` as a float after checking it is a finite budget in [0, 1] pixel units.

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
    eps = _as_number(eps, name)
    if not math.isfinite(eps):
        raise ValueError(f"{name} must be a finite number in [0, 1] pixel units, got {eps}")
    if eps < 0:
        raise ValueError(f"{name} must be >= 0, got {eps}")
    if norm == "l2":
        largest = dim ** 0.5 if dim else float("inf")
        if eps > largest:
            raise ValueError(
                f"{name}={eps:g} is larger than {largest:.4g}, the diagonal of the [0, 1] box (the largest L2 "
                f"distance between two inputs); robustviz measures eps in [0, 1] pixel units. If you meant "
                f"{eps:g}/255, pass {name}={eps / 255:.5f}."
            )
        return eps
    if eps > 1:
        advice = f"{name} {eps / 255:.5f}" if name.startswith("--") else f"{name}={eps:g}/255 = {eps / 255:.5f}"
        raise ValueError(
            f"{name}={eps:g} is larger than 1, but robustviz measures eps in [0, 1] pixel units. "
            f"If you meant {eps:g}/255, pass {advice}."
        )
    return eps


def check_budgets(eps, norm: str = "l2", dim: int | None = None) -> list[float]:
    """The budgets of a call that accepts several: one number or a sequence of numbers, checked.

    Example:
        >>> check_budgets(0.3)
        [0.3]
        >>> check_budgets((0.1, 0.2))
        [0.1, 0.2]
    """
    values = [eps] if isinstance(eps, (Real, str)) or _is_scalar_tensor(eps) else eps
    if not isinstance(values, Iterable):
        raise TypeError(f"eps must be a number or a sequence of numbers, e.g. (0.1, 0.3); got {type(eps).__name__}")
    budgets = [check_eps(value, norm=norm, dim=dim) for value in values]
    if not budgets:
        raise ValueError("eps is empty; pass at least one budget, e.g. eps=(0.1, 0.3)")
    return budgets


def as_names(names, what: str = "attacks") -> list[str]:
    """A list of names from one string (``"pgd-20"``) or a sequence of strings.

    Example:
        >>> as_names("pgd-20")
        ['pgd-20']
    """
    listed = [names] if isinstance(names, str) else list(names)
    if not listed:
        raise ValueError(f"{what} is empty; pass at least one, e.g. {what}=('fgsm', 'pgd-20')")
    return listed


def check_labels(y: torch.Tensor, num_classes: int, name: str = "y") -> None:
    """Raise ``ValueError`` unless ``y`` holds integer class indices in [0, num_classes).

    Example:
        >>> check_labels(torch.tensor([0, 3, 9]), num_classes=10)
    """
    check_label_tensor(y, name)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{name} has labels in [{int(y.min())}, {int(y.max())}] but the model has "
            f"{num_classes} classes (valid labels: 0..{num_classes - 1})"
        )


def check_label_tensor(y, name: str = "y") -> None:
    """Raise unless ``y`` is a 1-D integer tensor ``[B]`` (the model is not needed for this)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of integer class indices [B], got {type(y).__name__}; "
            f"convert it with torch.tensor({name}) (or torch.from_numpy({name}))"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        hint = f" (one-hot labels? use {name}.argmax(1))" if y.dim() == 2 else f" (use {name}.long())"
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}{hint}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D [B], got shape {tuple(y.shape)} (use {name}.flatten())")


def check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` and ``y`` have the same batch size."""
    if x.dim() == 0 or x.shape[0] != y.shape[0]:
        samples = x.shape[0] if x.dim() else 0
        raise ValueError(f"x has {samples} samples but y has {y.shape[0]} labels; they must match")


def expected_input(model: nn.Module) -> tuple[str, int] | None:
    """What ``model`` takes: ``("image", channels)``, ``("vector", size)`` or ``None`` (unknown).

    robustviz models record it (``build_args``); for other models the first ``nn.Conv2d``
    gives the channels of an image model.
    """
    args = getattr(model, "build_args", None)
    if isinstance(args, dict) and "in_channels" in args:
        return ("vector" if args.get("name") == "mlp" else "image"), int(args["in_channels"])
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return ("image", conv.in_channels) if conv is not None else None


def check_model_input(model: nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` when ``x``'s shape cannot be what ``model`` takes.

    Catches a missing batch dimension, channels-last images (``[B, H, W, C]``, as numpy and
    PIL give them) and a channel count other than the model's.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
        >>> check_model_input(net, torch.rand(2, 1, 8, 8))
    """
    expected = expected_input(model)
    if expected is None:
        return
    kind, channels = expected
    shape = tuple(x.shape)
    if kind == "vector":
        if x.dim() != 2 or shape[1] != channels:
            raise ValueError(f"{name} has shape {shape}, but the model takes [B, {channels}] inputs")
        return
    if x.dim() == 3:
        raise ValueError(
            f"{name} has shape {shape}, but the model takes a batch of images [B, {channels}, H, W]: for one "
            f"image use {name}.unsqueeze(0), for a batch of images without a channel axis {name}.unsqueeze(1)"
        )
    if x.dim() != 4:
        raise ValueError(f"{name} has shape {shape}, but the model takes images [B, {channels}, H, W]")
    if shape[1] != channels:
        if shape[3] == channels:
            raise ValueError(
                f"{name} has shape {shape}, channels last [B, H, W, C]; robustviz models take [B, C, H, W]: "
                f"use {name}.permute(0, 3, 1, 2)"
            )
        raise ValueError(f"{name} has {shape[1]} channels (shape {shape}) but the model takes {channels}")


def check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, allow_empty: bool = True,
                 what: str = "this call") -> None:
    """Every check of ``(x, y)`` against each other and against ``model``.

    Images finite and in [0, 1], their shape what the model takes, labels integer class
    indices of the same batch size and within the model's classes: ``model.num_classes``,
    or for other models the number of scores it returns for one input.

    Args:
        allow_empty: whether an empty batch is fine (attacks return it unchanged); if not,
            the error names ``what`` needs samples.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> check_inputs(net, torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1]))
    """
    check_images(x)
    check_label_tensor(y)
    check_batch(x, y)
    if x.shape[0] == 0:
        if allow_empty:
            return
        raise ValueError(f"{what} got an empty batch (x has shape {tuple(x.shape)}); pass at least one sample")
    check_model_input(model, x)
    check_labels(y, number_of_classes(model, x))


def number_of_classes(model: nn.Module, x: torch.Tensor) -> int:
    """``model.num_classes``, or the number of scores ``model`` returns for ``x[:1]`` (eval mode)."""
    known = getattr(model, "num_classes", None)
    if known is not None:
        return int(known)
    modes = {module: module.training for module in model.modules()}
    param = next(model.parameters(), None)
    model.eval()
    try:
        with torch.no_grad():
            probe = x[:1] if param is None else x[:1].to(device=param.device, dtype=param.dtype)
            scores = model(probe)
    except RuntimeError as err:
        raise ValueError(f"the model cannot run on x of shape {tuple(x.shape)}: {err}") from err
    finally:
        for module, training in modes.items():
            module.training = training
    if scores.dim() != 2:
        raise ValueError(f"the model must return class scores [B, K], got shape {tuple(scores.shape)}")
    return int(scores.shape[1])


def check_device(device: str | torch.device | None) -> torch.device:
    """The ``torch.device`` for ``device`` (``None`` or ``"auto"``: CUDA if available, else the CPU).

    Raises ``ValueError`` for a name torch does not know (``"gpu"``) or a device this machine
    does not have, so the mistake is caught before any work starts.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {device!r}; use 'auto' (a GPU if there is one), 'cpu' or 'cuda' "
            "('cuda:1' for the second GPU)"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} was asked for, but PyTorch sees no CUDA GPU on this machine "
                "(torch.cuda.is_available() is False); use 'cpu' or 'auto' (command line: --device cpu)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but this machine has no Apple GPU; use 'cpu' or 'auto'")
    return device


# Training settings: their kind and the smallest allowed value (``None``: no bound).
_SETTING_KINDS = {
    "epochs": (int, 1), "steps": (int, 1), "batch_size": (int, 1), "val_size": (int, 0),
    "monitor_steps": (int, 0), "feat_dim": (int, 1),
    "lr": (float, 0.0), "momentum": (float, 0.0), "weight_decay": (float, 0.0), "gamma": (float, 0.0),
    "co_drop": (float, 0.0), "warmup_fraction": (float, 0.0),
    "rollback": (bool, None), "channels_last": (bool, None), "sync_batchnorm": (bool, None),
    "model": (str, None), "optimizer": (str, None), "schedule": (str, None), "augment": (str, None),
}
_OPTIONAL_SETTINGS = ("steps", "feat_dim", "eps", "augment")


def check_train_settings(settings: dict) -> None:
    """Raise ``TypeError``/``ValueError`` for a training setting of the wrong kind or out of range.

    ``settings`` maps ``TrainConfig`` field names to values (``TrainConfig`` calls this for
    itself, so a recipe, ``fit(..., lr=...)`` and ``robustviz train --set lr=...`` are all
    checked). Integers must be whole numbers, numbers must be finite, ``eps`` a budget in
    [0, 1] pixel units.

    Example:
        >>> check_train_settings({"epochs": 3, "lr": 0.01})
    """
    for key, value in settings.items():
        if value is None and key in _OPTIONAL_SETTINGS:
            continue
        if key == "eps":
            check_eps(value, "eps")
        elif key == "milestones":
            if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
                raise TypeError(f"milestones must be a list of epoch numbers, e.g. [50, 75]; got {value!r}")
        elif key == "method_kwargs":
            if not isinstance(value, dict):
                raise TypeError(f'method_kwargs must be a dict, e.g. {{"steps": 5}}; got {value!r}')
        elif key in _SETTING_KINDS:
            _check_setting(key, value, *_SETTING_KINDS[key])


def _check_setting(key: str, value, kind: type, smallest) -> None:
    shown = f"{value!r} ({type(value).__name__})"
    if kind is bool and not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false (command line: --set {key}=true), got {shown}")
    if kind is str and not isinstance(value, str):
        raise TypeError(f"{key} must be a name, got {shown}")
    if kind is int and not _is_int(value):
        raise TypeError(f"{key} must be a whole number (e.g. {key}={max(smallest or 0, 1)}), got {shown}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{key} must be a number (e.g. {key}=0.01), got {shown}")
        if not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value}")
    if smallest is not None and value < smallest:
        raise ValueError(f"{key} must be >= {smallest}, got {value}")
    if kind is float and key == "lr" and value == 0:
        raise ValueError("lr must be > 0 (with lr=0 nothing is learned)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1


def _as_number(value, name: str) -> float:
    """``float(value)`` for a real number (or a one-element tensor), else a ``TypeError`` that says why."""
    if _is_scalar_tensor(value):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        if isinstance(value, (tuple, list)):
            raise TypeError(
                f"{name} must be one number here, got {type(value).__name__} {value!r}; for several budgets call "
                "evaluate_robustness(..., eps=(0.1, 0.3)) or loop over them"
            )
        raise TypeError(f"{name} must be a number in [0, 1] pixel units (e.g. 0.3 or 8 / 255), got {value!r}")
    return float(value)


def unknown_name_error(kind: str, name: str, known: list[str] | tuple[str, ...]) -> ValueError:
    """Build the error for an unknown registry key, listing the valid ones."""
    return ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(known))}")


def nearest_names_error(kind: str, name: str, known: list[str] | tuple[str, ...], how_to_list: str = "") -> ValueError:
    """Build the error for a name that does not exist, naming the nearest existing ones (difflib).

    Example:
        >>> str(nearest_names_error("layer", "layer5", ["layer3", "layer4", "fc"]))
        "unknown layer 'layer5'; the nearest existing names are: 'layer4', 'layer3'"
    """
    import difflib

    nearest = difflib.get_close_matches(name, known, n=5, cutoff=0.4) or list(known)[:10]
    listed = ", ".join(repr(candidate) for candidate in nearest)
    hint = f" ({how_to_list})" if how_to_list else ""
    return ValueError(f"unknown {kind} {name!r}; the nearest existing names are: {listed}{hint}")
