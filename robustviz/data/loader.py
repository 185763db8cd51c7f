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
        rank, world_size: under ``torchrun`` (``robustviz.distributed``), process ``rank`` of
            ``world_size`` gets its part ``batch[rank::world_size]`` of every global batch: the
            same seeded permutation and augmentation draws on every rank, so the global batches
            and their order are those of one process. Defaults: one process, whole batches.

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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if augment not in (None, "crop_flip"):
            raise ValueError(f"augment must be None or 'crop_flip', got {augment!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
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
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        n = self.y.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def part(self, count: int) -> slice:
        """This rank's positions in a global batch of ``count`` samples (all of them for one process)."""
        return slice(self.rank, count, self.world_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of epoch ``epoch`` (deterministic given seed and epoch); this rank's
        part of each under ``torchrun``."""
        gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        n = self.y.shape[0]
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start : start + self.batch_size]
            mine = self.part(batch.shape[0])
            x, y = self.x[batch[mine]], self.y[batch[mine]]
            if self.augment:  # drawn for the global batch: every sample gets its draws of one process
                offsets, flips = crop_flip_draws(batch.shape[0], self.pad, gen)
                x = crop_flip(x, self.pad, offsets[:, mine], flips[mine])
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
    offsets, flips = crop_flip_draws(x.shape[0], pad, generator)
    return crop_flip(x, pad, offsets, flips)


def crop_flip_draws(count: int, pad: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The random numbers of ``random_crop_flip`` for ``count`` images, drawn on the CPU.

    Returns:
        ``(offsets [2, count], flips [count])``: row and column offsets in ``0..2*pad`` and
        whether to flip each image. ``generator=None`` draws from the global RNG.
    """
    offsets = torch.randint(0, 2 * pad + 1, (2, count), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    return offsets, flips


def crop_flip(x: torch.Tensor, pad: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Crop (after zero padding by ``pad``) and flip a batch ``[B, C, H, W]`` as ``crop_flip_draws`` said."""
    b, _, h, w = x.shape
    offsets, flips = offsets.to(x.device), flips.to(x.device)
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
