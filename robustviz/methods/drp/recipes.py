"""The recipes of Deep Repulsive Prototypes: drp (robustviz's cosine regression) and drp_faithful."""

from __future__ import annotations

from ..base import Recipe
from .method import DRP

# Shared by both recipes: the model's feature size is the prototype dimension d (a linear embedding).
_SHARED = {
    # d = 16 >= K - 1 = 9 leaves the simplex room and also fits cube codes (K = 10 <= 16).
    ("mnist", "quick"): dict(feat_dim=16),
    # No paper setting for MNIST [unknown]: the `ce` recipe's (20 epochs, Adam 1e-3, raw [0, 1]
    # inputs as the release), for comparisons.
    ("mnist", "full"): dict(feat_dim=16, epochs=20, optimizer="adam", lr=1e-3, schedule="constant", milestones=()),
    ("mnist", "lab"): dict(feat_dim=16, epochs=10, optimizer="adam", lr=1e-3, schedule="constant", milestones=()),
    ("cifar", "quick"): dict(feat_dim=100),  # d = 100 as the official CIFAR-10 setting
    # The official CIFAR-10 setting (README.md, "Settings and their sources"): ResNet-18 with
    # d = 100 outputs, SGD lr 0.1, momentum 0.9, weight decay 5e-5, batch 128, crop + flip, x0.1
    # at iterations 40k and 60k (epochs 102 and 153 at 391 per epoch), 200 epochs, raw [0, 1]
    # inputs (the release has no Normalize).
    ("cifar", "full"): dict(model="resnet18", feat_dim=100, epochs=200, batch_size=128, optimizer="sgd", lr=0.1,
                            momentum=0.9, weight_decay=5e-5, schedule="multistep", milestones=(102, 153),
                            augment="crop_flip", input_norm="none"),
    # Lab: the paper's network, d, weight decay and raw inputs, but 30 epochs of a cyclic lr
    # peaking at the paper's 0.1 (fast-AT shape) instead of 200 epochs of step decay: about
    # 10 T4 minutes (no attack: 3 forward-pass equivalents per image and step).
    ("cifar", "lab"): dict(model="resnet18", feat_dim=100, epochs=30, batch_size=128, optimizer="sgd", lr=0.1,
                           momentum=0.9, weight_decay=5e-5, schedule="onecycle", warmup_fraction=0.5, milestones=(),
                           augment="crop_flip", input_norm="none"),
    ("toy", "quick"): dict(feat_dim=2),
    ("toy", "lab"): dict(feat_dim=2),  # 2-D features: prototypes and features plot as they are
    ("toy", "full"): dict(feat_dim=2),
}


def _overrides(changes: dict[tuple[str, str], dict], **method_kwargs) -> dict[tuple[str, str], dict]:
    """``_SHARED`` updated with ``changes``, and ``method_kwargs`` in every entry."""
    return {key: dict(settings, **changes.get(key, {}), method_kwargs=dict(method_kwargs))
            for key, settings in _SHARED.items()}


RECIPES: list[Recipe] = [
    Recipe(
        key="drp",
        summary="fixed repulsive class prototypes (sphere = simplex here), per-sample cosine regression; no AT",
        paper="Serban, Poll & Visser 2021, arXiv:2105.12427 (with well-posed prototypes, a robustviz variant)",
        make=DRP,
        # The cosine loss, not the L-inf loss: the L-inf loss trains one output coordinate per
        # sample and learns far more slowly (README.md, "Notes").
        overrides=_overrides({}, prototypes="sphere", loss="cos"),
    ),
    Recipe(
        key="drp_faithful",
        summary="DRP as released: unbounded L-inf-sum prototypes, L-inf regression (evaluation-pitfalls lesson)",
        paper="Serban, Poll & Visser 2021, arXiv:2105.12427 (official code)",
        make=DRP,
        overrides=_overrides(
            {
                # Targets with L-inf norms up to ~80 need larger Adam steps (README.md, "Notes").
                ("mnist", "quick"): dict(lr=3e-3),
                ("mnist", "full"): dict(lr=3e-3),
                ("mnist", "lab"): dict(lr=3e-3),
                # fp32: with |p| up to ~80, bf16 outputs are off by up to 0.25 (README.md, "Large
                # prototypes in low precision").
                ("cifar", "full"): dict(amp="off"),
                # Lab: fp16 (with the loss scaler) on every GPU, not bf16 and not fp32: fp16 resolves
                # outputs of size 64-128 to 1/16 (bf16: 1/2), and fp32 would run a T4 at an eighth
                # of its fp16 tensor rate (8 vs 65 TFLOPS), far beyond the lab's 10 minutes.
                ("cifar", "lab"): dict(amp="fp16"),
            },
            # E = 100 generator steps, as the release's CIFAR-10 prototypes.
            prototypes="faithful", loss="inf", eps_inside=1e-6, prototype_options=dict(steps=100),
        ),
    ),
]
