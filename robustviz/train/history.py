"""Per-epoch training history: a list of plain dicts, JSON-ready."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class History:
    """One record per epoch, e.g. ``{"epoch": 1, "loss": 0.3, "val_clean_acc": 0.97, ...}``.

    Example:
        >>> h = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.3}])
        >>> h["loss"]
        [0.5, 0.3]
    """

    records: list[dict] = field(default_factory=list)

    def append(self, record: dict) -> None:
        self.records.append(dict(record))

    def __getitem__(self, key: str) -> list:
        """All values of ``key`` over the epochs (``None`` where an epoch lacks it)."""
        return [r.get(key) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return list(seen)

    def to_list(self) -> list[dict]:
        return [dict(r) for r in self.records]
