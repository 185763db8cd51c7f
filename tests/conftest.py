"""Shared fixtures: small real data and a briefly trained model (CPU, seconds)."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from robustviz import data, models  # noqa: E402
from robustviz.train import fit  # noqa: E402


@pytest.fixture(scope="session")
def mnist_mini():
    return data.load("mnist-mini")


@pytest.fixture(scope="session")
def small_mnist():
    """2,000 training and 500 test images of mnist-mini (stratified, seed 0)."""
    return data.load("mnist-mini", n_train=2000, n_test=500, seed=0)


@pytest.fixture(scope="session")
def trained_cnn(small_mnist):
    """A smallcnn trained with cross-entropy for 2 epochs on 2,000 images (about 80-90% clean)."""
    model = models.build("smallcnn", 10, 1, mean=small_mnist.mean, std=small_mnist.std, seed=0)
    fit(model, small_mnist, "ce", epochs=2, val_size=200, progress=False)
    return model.eval()


class TinyBNNet(nn.Module):
    """A conv net with BatchNorm and dropout, to check mode and statistics handling."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.fixture
def bn_net():
    return TinyBNNet()


_SESSION_START = __import__("time").time()


def pytest_terminal_summary(terminalreporter):
    """After a run that executed notebooks: every notebook's claim checks (robustviz.app.claims)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "test-artifacts" / "notebooks" / "claims.json"
    if not path.exists() or path.stat().st_mtime < _SESSION_START:
        return
    terminalreporter.section("claim checks per notebook")
    for name, claims in json.loads(path.read_text()).items():
        terminalreporter.write_line(f"{name}: {len(claims)} checks")
        for claim in claims:
            terminalreporter.write_line(f"  {claim}")
