"""Mixed precision per device: bf16 where the tensor cores have it, fp16 with a loss scaler
where they do not, float32 on the CPU.

bf16 keeps float32's exponent range, so a bf16 training step needs nothing else. GPUs
before Ampere (compute capability < 8.0, e.g. Colab's T4) have no bf16 tensor cores; there
fp16 runs fast, but its small exponent range lets gradients underflow to zero, so the loss
is multiplied by a running scale before ``backward`` (``torch.amp.GradScaler``) and the
gradients divided by it before the optimiser step. Loss terms compute in at least float32
inside autocast (``robustviz._precision``).

Training uses ``TrainConfig.amp`` (default ``"auto"``). Evaluation runs in float32 unless
asked otherwise (``evaluate_robustness(..., amp="auto")``): an attack in half precision can
see input gradients rounded to zero and report a model as more robust than it is.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

AMP_MODES = ("auto", "bf16", "fp16", "off")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(amp: str, device: torch.device, capability: tuple[int, int] | None = None) -> str:
    """The precision a run uses: ``"bf16"``, ``"fp16"`` or ``"off"``.

    ``"auto"`` picks bf16 on a CUDA device of compute capability >= 8.0 (Ampere and later),
    fp16 below it, and off on any other device; the other values are used as they are.

    Args:
        amp: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"off"``.
        device: the training device.
        capability: the CUDA compute capability; read from the device when ``None``.

    Example:
        >>> resolve_amp("auto", torch.device("cuda"), capability=(7, 5))  # a T4
        'fp16'
        >>> resolve_amp("auto", torch.device("cpu"))
        'off'
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp != "auto":
        return amp
    if device.type != "cuda":
        return "off"
    major, minor = capability if capability is not None else torch.cuda.get_device_capability(device)
    return "bf16" if (major, minor) >= (8, 0) else "fp16"


def autocast(mode: str, device: torch.device) -> AbstractContextManager:
    """``torch.autocast`` for a resolved ``mode`` (``nullcontext`` when ``"off"``)."""
    if mode == "off":
        return nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[mode])


def grad_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for fp16 (bf16 and float32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=mode == "fp16")
