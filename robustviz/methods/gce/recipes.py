"""The recipes of Guided Complement Entropy (gce) and its adversarial variant (gce_at)."""

from __future__ import annotations

from ...settings import shortened
from ..base import Recipe
from .method import GCEAdversarialTraining, GuidedComplementEntropyTraining

# The official MNIST setting (README.md, "Settings and their sources"): LeNet-5, Adam 1e-3,
# batch 64, 20 epochs, constant lr, raw [0, 1] inputs.
_OFFICIAL_MNIST = dict(model="lenet5", epochs=20, batch_size=64, optimizer="adam", lr=1e-3,
                       schedule="constant", milestones=(), input_norm="none")
# The group's COT CIFAR recipe, which a third-party GCE port also uses [inferred], with
# its per-channel mean/std normalisation.
_COT_CIFAR = dict(model="preact_resnet18", epochs=200, batch_size=128, optimizer="sgd", lr=0.1,
                  momentum=0.9, weight_decay=1e-4, schedule="multistep", milestones=(100, 150),
                  augment="crop_flip", input_norm="dataset")

_MADRY_MNIST = dict(epochs=84, batch_size=50, optimizer="adam", lr=1e-4, schedule="constant", milestones=(),
                    method_kwargs=dict(steps=40, step_size=0.01))

RECIPES: list[Recipe] = [
    Recipe(
        key="gce",
        summary="guided complement entropy alone: flatten the wrong classes, guided by p_true^alpha",
        paper="Chen et al. 2019, arXiv:1903.09799",
        make=GuidedComplementEntropyTraining,
        overrides={
            # Quick profiles keep the shared base (smallcnn, Adam 1e-3, cosine); a short run
            # shows GCE learns as fast as cross-entropy there.
            # Full MNIST = the official code (raw [0, 1] inputs: its Normalize is commented
            # out), except Adam's betas: robustviz uses the PyTorch default (0.9, 0.999), the
            # official code (0.9, 0.99); TrainConfig has no betas.
            ("mnist", "full"): dict(**_OFFICIAL_MNIST),
            ("mnist", "lab"): shortened("mnist", _OFFICIAL_MNIST, 10),
            # Lab: PreAct ResNet-18 on the fast-AT base (cyclic lr 0.2, wd 5e-4) for 30 epochs
            # instead of the COT recipe's 200 epochs of step decay (wd 1e-4).
            ("cifar", "lab"): dict(epochs=30),
            # The paper's ResNet-56 is not in the model zoo; PreAct ResNet-18 stands in.
            ("cifar", "full"): dict(**_COT_CIFAR),
            # Toys: the base MLP settings; needs >= 3 classes ('blobs', not 'moons').
        },
    ),
    Recipe(
        key="gce_at",
        summary="PGD adversarial training with GCE as the outer loss (inner attack: CE by default)",
        paper="Chen et al. 2019, arXiv:1903.09799 (AT setup inferred)",
        make=GCEAdversarialTraining,
        overrides={
            # The same settings as pgd_at, so the two differ only in the outer loss.
            ("mnist", "quick"): dict(epochs=5, method_kwargs=dict(steps=5, step_size=0.1, eps_ramp=0.3)),
            # eps 0.3, 40 steps of 0.01, random start; optimiser and length of
            # Madry et al. (Adam 1e-4, batch 50, about 100k iterations), as pgd_at.
            ("mnist", "full"): _MADRY_MNIST,
            ("mnist", "lab"): shortened("mnist", _MADRY_MNIST, 10),
            ("cifar", "quick"): dict(method_kwargs=dict(steps=5, step_size=2 / 255)),
            # eps 8/255, 10 steps of 2/255 on the COT recipe above.
            ("cifar", "full"): dict(**_COT_CIFAR, method_kwargs=dict(steps=10, step_size=2 / 255)),
            # Lab: as pgd_at's lab (PGD-2 of 4/255, 15 epochs of the fast-AT cyclic schedule), so the
            # two still differ only in the outer loss.
            ("cifar", "lab"): dict(epochs=15, method_kwargs=dict(steps=2, step_size=4 / 255)),
            ("toy", "*"): dict(method_kwargs=dict(steps=10)),
        },
    ),
]
