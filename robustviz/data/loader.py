"""A fast batch iterator for datasets that fit in memory.

No worker processes and no per-sample Python: the whole split is moved to the target
device once, every epoch draws one seeded permutation, and the optional augmentation
(random crop with zero padding + horizontal flip) runs on whole batches on the device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .bundle import Split


class BatchIterator:
    """Iterate over a ``Split`` in mini-batches of tensors on ``device``.

    Args:
        split: the data (images in [0, 1]).
        batch_size: samples per batch.
        device: where the batches live (use the model's device).
        shuffle: draw a new permutation every epoch.
        seed: base seed; epoch ``e`` uses ``seed`` and ``e`` so a resumed run sees the
            same batches as an uninterrupted one.
        augment: ``None`` or ``"crop_flip"`` (pad ``pad`` pixels with zeros, random crop
            back to size, random horizontal flip), done on the device.
        drop_last: skip the final incomplete batch.

    Example:
        >>> it = BatchIterator(bundle.train, batch_size=128, device="cpu", seed=0)  # doctest: +SKIP
        >>> for x, y in it.epoch(0): ...  # doctest: +SKIP
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
        seed: int = 0,
        augment: str | None = None,
        pad: int = 4,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if augment not in (None, "crop_flip"):
            raise ValueError(f"augment must be None or 'crop_flip', got {augment!r}")
        if augment and split.x.dim() != 4:
            raise ValueError("augment='crop_flip' needs image data [N, C, H, W]")
        self.device = torch.device(device)
        self.x = split.x.to(self.device)
        self.y = split.y.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.pad = pad
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = self.y.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of epoch ``epoch`` (deterministic given seed and epoch)."""
        gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        n = self.y.shape[0]
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            x, y = self.x[idx], self.y[idx]
            if self.augment:
                x = random_crop_flip(x, self.pad, gen)
            yield x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Randomly crop (after zero padding by ``pad``) and horizontally flip a batch.

    Args:
        x: images ``[B, C, H, W]`` on any device.
        pad: padding in pixels on every side; crops are offset by 0..2*pad.
        generator: a CPU generator; the random numbers are drawn on the CPU and moved,
            so the result is identical on CPU and GPU.
    Returns:
        augmented images ``[B, C, H, W]`` on ``x``'s device.
    """
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    flips = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = offsets[0].view(b, 1) + torch.arange(h, device=x.device).view(1, h)  # [B, H]
    cols = offsets[1].view(b, 1) + torch.arange(w, device=x.device).view(1, w)  # [B, W]
    cols = torch.where(flips.view(b, 1), cols.flip(1), cols)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    # Advanced indexing picks padded[b, :, rows[b, i], cols[b, j]] -> [B, H, W, C].
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919) % (2**63 - 1)
