"""Adversarial attacks as functions over any scores function, and one callable form for all of them.

Single step: ``fgsm``, ``rfgsm``. Iterative: ``bim`` (I-FGSM), ``mifgsm``, ``pgd`` (L-inf
or L2; losses ``"ce"``, ``"margin"``, ``"dlr"`` or any callable; targeted with ``target=``;
any first iterate with ``start=``), ``multi_targeted_pgd``. Black-box: ``transfer_attack``
(from a surrogate). Adaptive: ``adaptive_attack`` (margin and cross-entropy PGD on each view
of a method's own decision rule). Reference: ``autoattack`` (pyautoattack, with the
per-attack breakdown). Inside TRADES training: ``trades_attack``.

Every attack follows one contract: ``x`` in [0, 1], ``eps`` in [0, 1] units, the model run in
eval mode and its mode restored, ``x_adv`` returned inside the eps-ball and [0, 1].
``Attack`` binds an attack's settings and names it; ``make_attack("pgd-20", eps)`` builds one
from a short name.

Example:
    >>> from robustviz.attacks import make_attack, pgd
    >>> x_adv = pgd(model, x, y, eps=0.3, steps=20, seed=0)  # doctest: +SKIP
    >>> x_adv = make_attack("pgd-20", 0.3)(model, x, y)  # doctest: +SKIP
"""

from .adaptive import NearestCentreScores, adaptive_attack, decision_views
from .autoattack import AutoAttackResult, autoattack
from .core import eval_mode, input_gradient
from .fgsm import fgsm, rfgsm
from .iterative import bim, mifgsm
from .losses import ATTACK_LOSSES, cross_entropy, dlr, margin
from .pgd import pgd
from .registry import ATTACK_SPECS, Attack, make_attack
from .targeted import multi_targeted_pgd
from .trades import trades_attack
from .transfer import transfer_attack

__all__ = [
    "ATTACK_LOSSES", "ATTACK_SPECS", "Attack", "AutoAttackResult", "NearestCentreScores", "adaptive_attack",
    "autoattack", "bim", "cross_entropy", "decision_views", "dlr", "eval_mode", "fgsm", "input_gradient", "make_attack",
    "margin", "mifgsm", "multi_targeted_pgd", "pgd", "rfgsm", "trades_attack", "transfer_attack",
]
