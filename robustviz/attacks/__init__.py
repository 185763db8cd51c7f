"""Adversarial attacks as functions over any scores function, with thin callable classes.

Single step: ``fgsm``, ``rfgsm``. Iterative: ``bim`` (I-FGSM), ``mifgsm``, ``pgd`` (L-inf
or L2; losses ``"ce"``, ``"margin"``, ``"dlr"`` or any callable; targeted with ``target=``),
``multi_targeted_pgd``. Black-box: ``transfer_attack`` (from a surrogate). Adaptive:
``adaptive_attack`` (margin and cross-entropy PGD on each view of a method's own decision rule). Reference:
``autoattack`` (pyautoattack, with the per-attack breakdown). Inside TRADES training:
``trades_attack``.

Every attack follows one contract: ``x`` in [0, 1], ``eps`` in [0, 1] units, the model run in
eval mode and its mode restored, ``x_adv`` returned inside the eps-ball and [0, 1].

Example:
    >>> from robustviz.attacks import fgsm, pgd, PGD
    >>> x_adv = pgd(model, x, y, eps=0.3, steps=20, seed=0)  # doctest: +SKIP
"""

from .adaptive import Adaptive, NearestCentreScores, adaptive_attack, decision_views
from .autoattack import AutoAttack, AutoAttackResult, autoattack
from .core import eval_mode, input_gradient
from .fgsm import FGSM, RFGSM, fgsm, rfgsm
from .iterative import BIM, MIFGSM, bim, mifgsm
from .losses import ATTACK_LOSSES, cross_entropy, dlr, margin
from .pgd import PGD, pgd
from .targeted import MultiTargetedPGD, multi_targeted_pgd
from .trades import TradesAttack, trades_attack
from .transfer import Transfer, transfer_attack

__all__ = [
    "ATTACK_LOSSES", "BIM", "FGSM", "MIFGSM", "PGD", "RFGSM", "Adaptive", "AutoAttack", "AutoAttackResult",
    "MultiTargetedPGD", "NearestCentreScores", "TradesAttack", "Transfer", "adaptive_attack", "autoattack",
    "bim", "cross_entropy", "decision_views", "dlr", "eval_mode", "fgsm", "input_gradient", "margin",
    "mifgsm", "multi_targeted_pgd", "pgd", "rfgsm", "trades_attack", "transfer_attack",
]
