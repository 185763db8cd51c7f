"""The recipes of ClusTR (clustr) and ClusTR+QTRADES (clustr_qtrades)."""

from __future__ import annotations

from ..base import Recipe
from .method import ClusTR, ClusTRQTrades

# ---- recipes -------------------------------------------------------------------------------

# The official CIFAR-10 setting (README.md, "Settings and their sources"): ResNet-18's 512-d
# post-ReLU pooled features, Adam 1e-4 without weight decay, constant lr (the official
# milestones [30, 60] never fire), batches of M * D = 12 * 20 = 240, K = 2, alpha = 12.5,
# L = 20, k-means 1 init / 20 iterations.
# Inputs normalised with the per-channel mean/std, as the official code.
_CLUSTR_CIFAR = dict(clusters_per_class=2, clusters_per_batch=12, examples_per_cluster=20, alpha=12.5,
                     top_l=20, kmeans_n_init=1, kmeans_max_iter=20)
_FULL_CIFAR = dict(model="resnet18", feat_dim=None, batch_size=240, optimizer="adam", lr=1e-4,
                   weight_decay=0.0, schedule="constant", milestones=(), augment="crop_flip", input_norm="dataset")
# The paper's pre-trained ResNet-18 is not available: the full profiles warm-start with
# cross-entropy for this many epochs before the paper's 30 (ClusTR) or 25 (QTRADES) Magnet
# epochs [inferred: the length of the paper's pre-training is unknown].
_PRETRAIN_CIFAR = 15

# Quick profile (CPU minutes): smallcnn's natural 200-d post-ReLU features (like the paper's
# post-ReLU embedding), K = 2, M * D = 8 * 16 = 128 per batch, Adam 1e-3 at a constant lr, from
# scratch: the Magnet loss alone learns mnist-mini, so no cross-entropy warm-up stands in for
# the paper's pre-trained init (README.md, "Notes"). L = 20 = C*K: every centre votes, as in
# the official evaluation.
_QUICK = dict(feat_dim=None, epochs=4, batch_size=8 * 16, optimizer="adam", lr=1e-3, schedule="constant",
              milestones=(), method_kwargs=dict(clusters_per_class=2, clusters_per_batch=8,
                                                examples_per_cluster=16, top_l=20))
# MNIST full [inferred; the paper has no MNIST experiment]: the CIFAR-10 batch layout and
# k-means settings, 2 epochs of cross-entropy warm start then 30 Magnet epochs at the quick
# profile's lr, inputs normalised as in the official (CIFAR) code.
_FULL_MNIST = dict(model="smallcnn", feat_dim=None, epochs=32, batch_size=240, optimizer="adam", lr=1e-3,
                   weight_decay=0.0, schedule="constant", milestones=(), input_norm="dataset",
                   method_kwargs=dict(_CLUSTR_CIFAR, pretrain_epochs=2))
# 2-D toys: the mlp's linear 2-d embedding (plottable directly). M is capped by the number of
# non-empty other-class clusters plus one (moons: 3, blobs: 5).
# Lab [robustviz choice]: the full profiles' network, batch layout and k-means
# settings, shorter. CIFAR-10: 8 epochs of cross-entropy warm start + 12 Magnet epochs (ClusTR)
# or 6 + 8 (QTRADES, whose steps cost about twice as much) instead of 15 + 30 / 15 + 25, and
# Adam at 1e-3 (the quick profile's from-scratch lr) instead of the paper's 1e-4, which
# fine-tunes an already trained network. MNIST: the full profile for 2 + 10 epochs.
_LAB_CIFAR = dict(_FULL_CIFAR, lr=1e-3)
_LAB_MNIST = dict(_FULL_MNIST, epochs=12)
_TOY = dict(batch_size=4 * 16, method_kwargs=dict(clusters_per_class=2, clusters_per_batch=4,
                                                   examples_per_cluster=16, top_l=20))


def _with_kwargs(config: dict, **method_kwargs) -> dict:
    return {**config, "method_kwargs": {**config.get("method_kwargs", {}), **method_kwargs}}


RECIPES: list[Recipe] = [
    Recipe(
        key="clustr",
        summary="ClusTR: Magnet-loss clusters + soft nearest-cluster head (adversary-free; masks gradients)",
        paper="Alfarra et al. 2020, arXiv:2006.07682",
        make=ClusTR,
        overrides={
            ("mnist", "quick"): _QUICK,
            ("mnist", "full"): _FULL_MNIST,
            ("cifar", "quick"): _QUICK,
            ("cifar", "full"): dict(**_FULL_CIFAR, epochs=_PRETRAIN_CIFAR + 30,
                                    method_kwargs=dict(_CLUSTR_CIFAR, pretrain_epochs=_PRETRAIN_CIFAR)),
            ("mnist", "lab"): _LAB_MNIST,
            ("cifar", "lab"): dict(**_LAB_CIFAR, epochs=8 + 12, method_kwargs=dict(_CLUSTR_CIFAR, pretrain_epochs=8)),
            ("toy", "*"): _TOY,
        },
    ),
    Recipe(
        key="clustr_qtrades",
        summary="ClusTR+QTRADES: ClusTR plus a one-step (1.25 eps) clean/adversarial consistency term",
        paper="Alfarra et al. 2020, arXiv:2006.07682 (official code, README 'ClusTR+QTRADES')",
        make=ClusTRQTrades,
        overrides={
            # eps is the dataset's (MNIST 0.3, CIFAR 8/255, toys 0.05); the step is 1.25 eps; the
            # attack is crafted with BatchNorm's batch statistics (official: train mode).
            ("mnist", "quick"): _with_kwargs(_QUICK, lam=8.0, step_size=0.375),
            ("mnist", "full"): _with_kwargs(_FULL_MNIST, lam=8.0, step_size=0.375),
            ("mnist", "lab"): _with_kwargs(_LAB_MNIST, lam=8.0, step_size=0.375),
            ("cifar", "quick"): _with_kwargs(_QUICK, lam=8.0, step_size=10 / 255),
            # The official README: lambda 8, 25 epochs from the pre-trained network, eps 8/255, step 10/255.
            ("cifar", "full"): dict(**_FULL_CIFAR, epochs=_PRETRAIN_CIFAR + 25, method_kwargs=dict(
                **_CLUSTR_CIFAR, pretrain_epochs=_PRETRAIN_CIFAR, lam=8.0, step_size=10 / 255)),
            ("cifar", "lab"): dict(**_LAB_CIFAR, epochs=6 + 8, method_kwargs=dict(
                **_CLUSTR_CIFAR, pretrain_epochs=6, lam=8.0, step_size=10 / 255)),
            ("toy", "*"): _with_kwargs(_TOY, lam=8.0, step_size=0.0625),
        },
    ),
]
