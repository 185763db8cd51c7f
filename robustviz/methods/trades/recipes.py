"""TRADES's recipe per dataset family and profile (settings and where each comes from: README.md)."""

from __future__ import annotations

from ...settings import shortened
from ..base import Recipe
from .method import TRADES

_MNIST_FULL = dict(model="smallcnn", epochs=100, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9,
                   weight_decay=0.0, schedule="multistep", milestones=(54,),
                   method_kwargs=dict(steps=40, step_size=0.01, beta=6.0))

RECIPES: list[Recipe] = [
    Recipe(
        key="trades",
        summary="TRADES: clean CE + beta * KL(p(x) || p(x')) with x' from a KL attack",
        paper="Zhang et al. 2019, arXiv:1901.08573",
        make=TRADES,
        overrides={
            # CPU-sized, like pgd_at's quick MNIST: 5 steps of 0.1, eps ramped over 30%.
            ("mnist", "quick"): dict(epochs=5, method_kwargs=dict(steps=5, step_size=0.1,
                                                                eps_ramp=0.3, beta=6.0)),
            # train_trades_mnist.py: SmallCNN, batch 128, SGD lr 0.01 m 0.9, no weight decay,
            # 100 epochs, 40 steps of 0.01 at eps 0.3; beta 6 as in the paper's MNIST table.
            # Its lr rule `if epoch >= 55 ... elif epoch >= 75 ... elif epoch >= 90` only
            # ever applies the first drop: x0.1 from its (1-based) epoch 55 on, i.e. after
            # 54 finished epochs.
            ("mnist", "full"): _MNIST_FULL,
            ("mnist", "lab"): shortened("mnist", _MNIST_FULL, 10),
            ("cifar", "quick"): dict(method_kwargs=dict(steps=5, step_size=2 / 255, beta=6.0)),
            # train_trades_cifar10.py: WRN-34-10, batch 128, SGD lr 0.1 m 0.9, wd 2e-4,
            # 76 epochs, lr x0.1 from its (1-based) epoch 75, crop+flip, raw [0, 1] inputs (no
            # Normalize), 10 steps, beta 6. The code's eps 0.031 / step 0.007 are 8/255 / 2/255
            # rounded; we use the fractions.
            ("cifar", "full"): dict(model="wrn34_10", epochs=76, batch_size=128, optimizer="sgd",
                                    lr=0.1, momentum=0.9, weight_decay=2e-4, schedule="multistep",
                                    milestones=(74,), augment="crop_flip", input_norm="none",
                                    method_kwargs=dict(steps=10, step_size=2 / 255, beta=6.0)),
            # Lab: PreAct ResNet-18 (the fast-AT base, normalised inputs, cyclic lr 0.2) instead of
            # WRN-34-10 (12x the FLOPs), 5 KL-attack steps of 4/255 (2.5 eps / 5) instead of 10 of
            # 2/255, 6 epochs instead of 76: the budget of about 10 T4 minutes. beta 6 as the paper.
            ("cifar", "lab"): dict(epochs=6, method_kwargs=dict(steps=5, step_size=4 / 255, beta=6.0)),
            ("toy", "*"): dict(method_kwargs=dict(steps=10, beta=6.0)),
        },
    ),
]
