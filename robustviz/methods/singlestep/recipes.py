"""The recipes of the single-step regularisers SAT-R1, SAT-R2 and SAT-R3."""

from __future__ import annotations

from ..base import Recipe
from .method import SATR1, SATR2, SATR3

# Recipes (README.md, "Settings and their sources")
# ---------------------------------------------------------------------------------------


def step_milestones(epochs: int) -> tuple[int, int, int]:
    """The authors' step schedule as ``fit`` milestones (README.md, "Learning-rate drops one epoch late").

    The authors divide the learning rate by 5, 25 and 125 at the *end* of the epochs with
    0-indexed number ``E/4``, ``2E/4`` and ``3E/4`` (Python 2 integer division), so the new
    rate is first used in the epoch after. ``make_schedule("multistep")`` applies milestone
    ``m`` from the first step of epoch index ``m``, hence ``+ 1``. Use with ``gamma=0.2``.

    Example:
        >>> step_milestones(20)
        (6, 11, 16)
    """
    return (epochs // 4 + 1, 2 * epochs // 4 + 1, 3 * epochs // 4 + 1)


def _authors_setup(model: str, epochs: int, batch_size: int, lr: float, augment: str | None, **kwargs) -> dict:
    """The authors' training setup: raw [0, 1] inputs, SGD m 0.9, wd 5e-4, step
    schedule /5, /25, /125, and the epoch with the best held-out I-FGSM-3 accuracy kept."""
    return dict(model=model, epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=lr, momentum=0.9,
                weight_decay=5e-4, schedule="multistep", gamma=0.2, milestones=step_milestones(epochs),
                augment=augment, input_norm="none", monitor_attack="ifgsm", monitor_steps=3, rollback=True,
                method_kwargs=kwargs)


def _mnist_full(lr: float, **kwargs) -> dict:
    return _authors_setup("lenet_plus", 20, 32, lr, None, **kwargs)


def _cifar_full(**kwargs) -> dict:
    return _authors_setup("wrn28_10_satrx", 100, 64, 0.1, "crop_flip", **kwargs)


def _mnist_lab(lr: float, **kwargs) -> dict:
    """Lab: the authors' MNIST setup (LeNet+) for 10 epochs instead of 20, the schedule scaled."""
    return _authors_setup("lenet_plus", 10, 32, lr, None, **kwargs)


def _cifar_lab(epochs: int, **kwargs) -> dict:
    """Lab: the authors' CIFAR-10 setup (batch 64, SGD lr 0.1, wd 5e-4, the /5 step schedule, raw
    inputs, best held-out I-FGSM-3 epoch kept) on PreAct ResNet-18 instead of their WRN-28-10
    (10.7x the FLOPs per image), for ``epochs`` (10-18, by cost per step) instead of 100: about 10 T4 minutes."""
    return _authors_setup("preact_resnet18", epochs, 64, 0.1, "crop_flip", **kwargs)


def _mnist_quick(lr: float, **kwargs) -> dict:
    """CPU-sized: the authors' setup on LeNet+ for 4 epochs instead of 20."""
    return _authors_setup("lenet_plus", 4, 32, lr, None, **kwargs)


# The authors' hyperparameters (README.md, "Settings and their sources"), per dataset family.
_R1 = {"mnist": dict(steps=10, lam=0.2), "cifar": dict(steps=3, lam=0.2)}
_R2 = {"mnist": dict(alpha=0.01, lam=5.0), "cifar": dict(alpha=2 / 255, lam=25.0)}
_R3 = {"mnist": dict(eps_lo=0.1, alpha=0.01, lam=1.0, tau=0.4),
       "cifar": dict(eps_lo=2 / 255, alpha=2 / 255, lam=1.0, tau=0.6)}

_PAPER = "Vivek & Babu 2020, arXiv:2002.00614 (code: val-iisc/SAT-Rx)"

RECIPES: list[Recipe] = [
    Recipe(
        key="sat_r1",
        summary="FGSM-AT + lam * ||f(FGSM) - f(I-FGSM)||^2 on the batch's last image (SAT-R1)",
        paper=_PAPER,
        make=SATR1,
        overrides={
            ("mnist", "quick"): _mnist_quick(0.01, **_R1["mnist"]),
            ("mnist", "full"): _mnist_full(0.01, **_R1["mnist"]),
            ("mnist", "lab"): _mnist_lab(0.01, **_R1["mnist"]),
            ("cifar", "quick"): dict(method_kwargs=_R1["cifar"]),
            ("cifar", "full"): _cifar_full(**_R1["cifar"]),
            ("cifar", "lab"): _cifar_lab(18, **_R1["cifar"]),
        },
    ),
    Recipe(
        key="sat_r2",
        summary="FGSM-AT + lam * ||f(FGSM) - f(R-FGSM)||^2, samples up to eps + alpha away (SAT-R2)",
        paper=_PAPER,
        make=SATR2,
        overrides={
            ("mnist", "quick"): _mnist_quick(0.01, **_R2["mnist"]),
            ("mnist", "full"): _mnist_full(0.01, **_R2["mnist"]),
            ("mnist", "lab"): _mnist_lab(0.01, **_R2["mnist"]),
            ("cifar", "quick"): dict(method_kwargs=_R2["cifar"]),
            ("cifar", "full"): _cifar_full(**_R2["cifar"]),
            ("cifar", "lab"): _cifar_lab(10, **_R2["cifar"]),
        },
    ),
    Recipe(
        key="sat_r3",
        summary="CE(eps_hi) + lam * max(0, CE(eps_lo) - tau * CE(eps_hi)) on one FGSM ray (SAT-R3)",
        paper=_PAPER,
        make=SATR3,
        overrides={
            ("mnist", "quick"): _mnist_quick(0.05, **_R3["mnist"]),
            ("mnist", "full"): _mnist_full(0.05, **_R3["mnist"]),
            ("mnist", "lab"): _mnist_lab(0.05, **_R3["mnist"]),
            ("cifar", "quick"): dict(method_kwargs=_R3["cifar"]),
            ("cifar", "full"): _cifar_full(**_R3["cifar"]),
            ("cifar", "lab"): _cifar_lab(12, **_R3["cifar"]),
        },
    ),
]
