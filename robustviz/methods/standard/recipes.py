"""The baselines' recipes: standard training (ce) and adversarial training with PGD, FGSM and FGSM-RS."""

from __future__ import annotations

from ...settings import shortened
from ..base import Recipe
from .method import AdversarialTraining, CrossEntropy

# Wong et al.'s fast-AT setting (train_fgsm.py), shared by the two single-step baselines on
# CIFAR: cyclic lr peaking at half of training, inputs normalised with the dataset's mean/std,
# the attack crafted in train mode (batch statistics).
_FAST_AT_CIFAR = dict(model="preact_resnet18", epochs=15, schedule="onecycle", warmup_fraction=0.5, lr=0.2,
                      optimizer="sgd", weight_decay=5e-4, augment="crop_flip", input_norm="dataset")

# Lab profile (docs/profiles.md): CIFAR-10 settings projected by bench/flops.py to about 10
# minutes on a T4; MNIST: the full settings for 10 epochs (``shortened``); toys: ``(toy, "*")``.
_CE_MNIST_FULL = dict(epochs=20, optimizer="adam", lr=1e-3, schedule="constant", milestones=())
_PGD_MNIST_FULL = dict(epochs=84, batch_size=50, optimizer="adam", lr=1e-4, schedule="constant", milestones=(),
                       method_kwargs=dict(steps=40, step_size=0.01))
_FGSM_RS_MNIST_FULL = dict(epochs=10, batch_size=100, optimizer="adam", lr=5e-3, schedule="onecycle",
                           warmup_fraction=0.4, milestones=(), method_kwargs=dict(steps=1, step_size=0.375))

RECIPES: list[Recipe] = [
        Recipe(
            key="ce",
            summary="standard training with cross-entropy (no defence)",
            paper="-",
            make=CrossEntropy,
            overrides={
                ("mnist", "full"): _CE_MNIST_FULL,
                ("mnist", "lab"): shortened("mnist", _CE_MNIST_FULL, 10),
                # Lab: the fast-AT base (PreAct ResNet-18, cyclic lr 0.2) for 30 epochs, no attack.
                ("cifar", "lab"): dict(epochs=30),
            },
        ),
        Recipe(
            key="pgd_at",
            summary="PGD adversarial training: train on PGD examples (random start, k steps)",
            paper="Madry et al. 2018, arXiv:1706.06083",
            make=AdversarialTraining,
            overrides={
                # CPU-sized: 5 steps of 0.1 and eps ramped up over the first 30% of training.
                ("mnist", "quick"): dict(epochs=5, method_kwargs=dict(steps=5, step_size=0.1,
                                                                    eps_ramp=0.3)),
                # Madry et al. MNIST: 40 steps of 0.01, Adam 1e-4, batch 50, 100k iterations.
                ("mnist", "full"): _PGD_MNIST_FULL,
                ("mnist", "lab"): shortened("mnist", _PGD_MNIST_FULL, 10),
                ("cifar", "quick"): dict(method_kwargs=dict(steps=5, step_size=2 / 255)),
                # Lab: PGD-2 of 4/255 (eps / 2, random start; Andriushchenko & Flammarion's PGD-2
                # baseline) for 15 epochs of the fast-AT cyclic schedule, instead of Rice et al.'s
                # PGD-10 of 2/255 for 200 epochs of step decay: the budget of about 10 T4 minutes.
                # Fewer attack steps for more epochs: a PGD-5 setting for fewer epochs gave lower
                # clean accuracy (README.md, "What the papers report and what robustviz measures").
                # Attack crafted in train mode, as in the full profile.
                ("cifar", "lab"): dict(epochs=15, method_kwargs=dict(steps=2, step_size=4 / 255, attack_bn="train")),
                # Rice et al. 2020 (PreAct ResNet-18): 10 steps of 2/255, 200 epochs, normalised
                # inputs, the attack crafted in train mode.
                ("cifar", "full"): dict(method_kwargs=dict(steps=10, step_size=2 / 255, attack_bn="train")),
                ("toy", "*"): dict(method_kwargs=dict(steps=10)),
            },
        ),
        Recipe(
            key="fgsm_at",
            summary="FGSM adversarial training: one eps-sized signed step from x (can mask gradients)",
            paper="Goodfellow et al. 2015, arXiv:1412.6572",
            make=AdversarialTraining,
            overrides={
                ("mnist", "*"): dict(method_kwargs=dict(steps=1, step_size=0.3, random_start=False)),
                ("mnist", "lab"): shortened("mnist", {}, 10),
                ("cifar", "quick"): dict(method_kwargs=dict(steps=1, step_size=8 / 255,
                                                            random_start=False)),
                ("cifar", "full"): dict(**_FAST_AT_CIFAR, method_kwargs=dict(
                    steps=1, step_size=8 / 255, random_start=False, attack_bn="train")),
                # Lab = full: the fast-AT setting already fits the budget (15 epochs).
                ("cifar", "lab"): dict(**_FAST_AT_CIFAR, method_kwargs=dict(
                    steps=1, step_size=8 / 255, random_start=False, attack_bn="train")),
                ("toy", "*"): dict(method_kwargs=dict(steps=1, step_size=0.05, random_start=False)),
            },
        ),
        Recipe(
            key="fgsm_rs",
            summary="FGSM with random start, step 1.25 eps, projected ('fast is better than free')",
            paper="Wong, Rice & Kolter 2020, arXiv:2001.03994",
            make=AdversarialTraining,
            overrides={
                ("mnist", "quick"): dict(method_kwargs=dict(steps=1, step_size=0.375)),
                # Wong et al. MNIST (train_mnist.py): alpha 0.375, 10 epochs, batch 100, Adam with
                # a cyclic lr peaking at 5e-3 after 2/5 of training, raw [0, 1] inputs.
                ("mnist", "full"): _FGSM_RS_MNIST_FULL,
                ("mnist", "lab"): _FGSM_RS_MNIST_FULL,  # 10 epochs already: lab = full
                ("cifar", "quick"): dict(method_kwargs=dict(steps=1, step_size=10 / 255)),
                ("cifar", "full"): dict(**_FAST_AT_CIFAR, method_kwargs=dict(steps=1, step_size=10 / 255,
                                                                             attack_bn="train")),
                # Lab = full: Wong et al.'s own setting is the lab budget (15 epochs).
                ("cifar", "lab"): dict(**_FAST_AT_CIFAR, method_kwargs=dict(steps=1, step_size=10 / 255,
                                                                            attack_bn="train")),
                ("toy", "*"): dict(method_kwargs=dict(steps=1, step_size=0.0625)),
            },
        ),
]

