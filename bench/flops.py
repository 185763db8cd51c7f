"""Count the floating-point operations of any code, attacks included.

``torch.utils.flop_counter.FlopCounterMode`` attributes FLOPs to modules with backward hooks,
which PyTorch does not support inside ``torch.autograd.grad`` (every attack's input gradient).
``CountFlops`` uses the same per-operator formulas (``torch.utils.flop_counter.flop_registry``:
convolutions, matrix products, attention, with their backward passes) without module hooks.

Example:
    >>> with CountFlops() as flops:  # doctest: +SKIP
    ...     method.loss(model, batch).loss.backward()
    >>> flops.total  # doctest: +SKIP
"""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class CountFlops(TorchDispatchMode):
    """Sum of the FLOPs of every operator with a formula in ``flop_registry`` (others count 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out
