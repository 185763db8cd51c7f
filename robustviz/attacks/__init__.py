"""Adversarial attacks as functions over any scores function, with thin callable classes.

Example:
    >>> from robustviz.attacks import fgsm, pgd, PGD
    >>> x_adv = pgd(model, x, y, eps=0.3, steps=20, seed=0)  # doctest: +SKIP
"""

from .core import eval_mode, input_gradient
from .fgsm import FGSM, fgsm
from .losses import ATTACK_LOSSES, cross_entropy, margin
from .pgd import PGD, pgd
from .trades import TradesAttack, trades_attack

__all__ = [
    "ATTACK_LOSSES", "FGSM", "PGD", "cross_entropy", "eval_mode", "fgsm", "input_gradient",
    "margin", "pgd", "trades_attack", "TradesAttack",
]
