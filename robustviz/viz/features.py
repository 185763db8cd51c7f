"""Feature extraction: ``features(x)`` for many inputs, batched, on the model's device."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def features_of(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``model.features`` of ``x`` in eval mode, as a CPU tensor ``[N, feat_dim]``.

    Example:
        >>> z = features_of(model, bundle.test.x[:1000])  # doctest: +SKIP
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model.features(x[i : i + batch_size].to(device)).float().cpu()
           for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out)
