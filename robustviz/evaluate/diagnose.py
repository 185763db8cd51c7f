"""Gradient-masking diagnostics: the warning signs of robustness that is not real.

Athalye, Carlini & Wagner (2018, Sec. 3.1) and Carlini et al. (2019, "On evaluating
adversarial robustness", Sec. 5) list behaviours that cannot happen when gradients are
informative, and that betray a model whose gradients mislead the attacker. ``diagnose``
measures each one and raises a named ``Flag`` with the measured value, the threshold it
was compared to and an explanation. A model with no flag raised is not proven robust;
a model with a flag raised should not be trusted until a stronger or adaptive attack
(``robustviz.evaluate.ladder``) has been run.

Thresholds [robustviz choices, documented per flag]: they separate the signatures the
literature describes (catastrophic overfitting, shattered gradients) from the small
effects every model shows (a few points between PGD-20 and PGD with restarts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .._checks import check_eps, check_inputs
from ..attacks import Attack, fgsm, pgd, transfer_attack
from ..attacks.core import ATTACK_BATCH_SIZE, eval_mode, input_gradient, prepare_inputs
from ..attacks.losses import cross_entropy
from .core import correct_under, predict
from .ladder import resolve_data

EXPLANATIONS = {
    "fgsm_above_clean": (
        "Accuracy under FGSM is higher than on clean inputs. An attack cannot help the model on "
        "purpose, so the FGSM step must be pointing the wrong way: the loss surface has been "
        "bent so that the gradient at x leads to points the model classifies *correctly* "
        "(label leaking / catastrophic overfitting of FGSM training). Single-step numbers from "
        "this model mean nothing."),
    "single_step_far_above_multi_step": (
        "FGSM leaves far more samples correct than PGD at the same budget. Iterative attacks "
        "are always at least as strong, but a huge gap means the loss is very non-linear "
        "within the ball: the first-order step that FGSM takes is useless and only many small "
        "steps find the adversarial examples. Typical of catastrophic overfitting in FGSM "
        "training; report multi-step and stronger attacks only."),
    "transfer_stronger_than_white_box": (
        "Adversarial examples crafted on a *different* model (a black-box transfer attack) fool "
        "this model more often than white-box PGD computed with this model's own gradients. "
        "With honest gradients the white-box attack knows strictly more, so the model's "
        "gradients must be misleading the attacker (masked, shattered or obfuscated)."),
    "not_zero_at_large_eps": (
        "At a very large budget the accuracy does not fall to about zero. At L-inf eps = 0.5 "
        "every image's ball contains the same flat grey image, so a model cannot stay correct "
        "on more than about one class's share of the samples. Surviving samples mean the "
        "attack failed, not that the model is robust: the gradients do not lead anywhere."),
    "loss_not_monotone_along_fgsm": (
        "Walking from x along the FGSM direction sign(grad), the loss goes down again before "
        "the step reaches eps for many samples. For a locally linear loss it rises all the "
        "way; a loss that rises then falls is curved at the scale of the ball, so the gradient "
        "at x describes only a tiny neighbourhood. Single-step attacks and single-step "
        "training are unreliable on such a model."),
    "low_local_linearity": (
        "The input gradient at x and the one at a random point of the eps-ball barely point the "
        "same way (low cosine). Andriushchenko & Flammarion (2020) show that this gradient "
        "misalignment is what catastrophic overfitting does to a network: the loss is no longer "
        "locally linear, so the gradient at one point says little about the ball around it."),
    "zero_gradients": (
        "For many samples the input gradient of the loss is exactly zero: sign(0) = 0, so "
        "gradient attacks do not move at all. Causes: non-differentiable layers (quantisation, "
        "thresholds), saturated softmax in low precision, or a decision rule with flat regions. "
        "Use losses that do not saturate (margin, DLR), BPDA for non-differentiable layers, or "
        "black-box attacks."),
    "more_steps_still_help": (
        "A much stronger PGD (more steps and random restarts) still lowers the accuracy by more "
        "than a few points. The attack has not converged: the reported number is an artefact "
        "of the attack budget. Keep climbing the ladder (restarts, margin/DLR losses, "
        "AutoAttack) until the accuracy stops moving."),
}


# The measurements ``diagnose`` makes, in order (one step of its progress bar each).
DIAGNOSE_STAGES = ("FGSM", "PGD-20", "strong PGD", "PGD at the large eps", "surrogate", "transfer",
                   "loss along FGSM", "gradient alignment")


@dataclass
class Flag:
    """One diagnostic: ``raised`` when ``value`` is beyond ``threshold`` in the direction ``above``."""

    name: str
    raised: bool
    value: float
    threshold: float
    above: bool
    explanation: str
    detail: str = ""

    def __str__(self) -> str:
        state = "RAISED" if self.raised else "ok"
        if math.isnan(self.value):
            return f"[not measured] {self.name}: {self.detail}"
        sign = ">" if self.above else "<"
        return f"[{state:>6}] {self.name}: {self.value:.3f} (raised if {sign} {self.threshold:g}) {self.detail}"


@dataclass
class Diagnosis:
    """All flags of ``diagnose`` plus the raw measurements (accuracies in [0, 1])."""

    eps: float
    flags: dict[str, Flag]
    measurements: dict[str, float] = field(default_factory=dict)

    @property
    def raised(self) -> list[str]:
        return [name for name, flag in self.flags.items() if flag.raised]

    @property
    def suspicious(self) -> bool:
        """``True`` when any flag is raised: do not trust the model's robustness numbers yet."""
        return bool(self.raised)

    def __str__(self) -> str:
        verdict = (f"gradient masking suspected ({', '.join(self.raised)})" if self.suspicious
                   else "no sign of gradient masking")
        return "\n".join([f"Diagnosis at eps = {self.eps:.4g}: {verdict}"] + [str(f) for f in self.flags.values()])

    def explain(self) -> str:
        """The explanation of every raised flag (or all flags when none is raised)."""
        shown = [f for f in self.flags.values() if f.raised] or list(self.flags.values())
        return "\n\n".join(f"{f.name}: {f.explanation}" for f in shown)


def diagnoses_table(diagnoses: dict[str, Diagnosis]) -> str:
    """Several models' diagnoses side by side, as a markdown table: one row per flag, one
    column per model, each cell the measured value, marked **RAISED** when the flag is raised.

    Example:
        >>> from IPython.display import Markdown  # doctest: +SKIP
        >>> both = {"fgsm_at": diagnose(a, data, 0.3), "pgd_at": diagnose(b, data, 0.3)}  # doctest: +SKIP
        >>> Markdown(diagnoses_table(both))  # doctest: +SKIP
    """
    if not diagnoses:
        raise ValueError("diagnoses_table needs at least one diagnosis")
    flags = list(next(iter(diagnoses.values())).flags)
    lines = ["| flag | " + " | ".join(diagnoses) + " |", "|---|" + "---|" * len(diagnoses)]
    for flag in flags:
        cells = [_cell(d.flags[flag]) for d in diagnoses.values()]
        lines.append(f"| {flag} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(flag: Flag) -> str:
    if math.isnan(flag.value):
        return "not measured"
    return ("**RAISED** " if flag.raised else "") + f"{flag.value:.2f}"


def diagnose(
    model: nn.Module,
    data,
    eps: float,
    n: int = 500,
    surrogate: nn.Module | str | None = "auto",
    large_eps: float = 0.5,
    strong_attack: tuple[int, int] = (100, 3),
    seed: int = 0,
    batch_size: int = ATTACK_BATCH_SIZE,
    progress: bool = True,
) -> Diagnosis:
    """Measure the gradient-masking warning signs of ``model`` at L-inf budget ``eps``.

    Flags (value, raised when):

    * ``fgsm_above_clean``: FGSM accuracy minus clean accuracy, ``> 0``.
    * ``single_step_far_above_multi_step``: FGSM robust accuracy minus PGD-20's, ``> 0.3``.
    * ``transfer_stronger_than_white_box``: PGD-20 robust accuracy minus the accuracy under
      PGD-20 transferred from ``surrogate``, ``> 0.02``.
    * ``not_zero_at_large_eps``: PGD-20 accuracy at ``large_eps``, ``> 0.1``.
    * ``loss_not_monotone_along_fgsm``: share of samples whose cross-entropy along
      ``x + t sign(grad)``, ``t`` in ``0..eps`` (11 points), drops by more than 1% of its range
      between two points, ``> 0.25``.
    * ``low_local_linearity``: mean cosine between the input gradients at ``x`` and at a
      uniform random point of the eps-ball, ``< 0.2``; not measured (NaN, never raised) when
      no sample has a non-zero gradient at both points.
    * ``zero_gradients``: share of samples whose input gradient is exactly zero, ``> 0.05``.
    * ``more_steps_still_help``: PGD-20 robust accuracy minus the worst case of PGD-20 and
      PGD-``steps`` x ``restarts`` (``strong_attack``), ``> 0.05``.

    Args:
        model: the classifier (its ``forward`` is attacked).
        data: a ``DataBundle``, ``Split`` or ``(x, y)``; the first ``n`` test samples are used.
        eps: L-inf budget in [0, 1] units.
        n: samples to evaluate.
        surrogate: a model for the transfer attack; ``"auto"`` trains a standard (``ce``)
            model of the recipe's quick architecture on ``data``'s training split (needs a
            ``DataBundle``; it costs a short training run, docs/benchmarks.md); ``None``
            skips the flag.
        large_eps: the "large" budget of ``not_zero_at_large_eps``.
        strong_attack: ``(steps, restarts)`` of the strong PGD.
        seed: seed of every attack and random point.
        batch_size: samples per attack batch.
        progress: show a progress bar over the measurements (and the surrogate's training).

    Returns:
        a ``Diagnosis``; ``print(diagnosis)`` lists the flags, ``diagnosis.explain()`` says why.

    Example:
        >>> report = diagnose(model, robustviz.data.load("mnist-mini"), eps=0.3)  # doctest: +SKIP
        >>> print(report); print(report.explain())  # doctest: +SKIP
    """
    eps = check_eps(eps)
    x, y = resolve_data(data, n)
    check_inputs(model, x, y, allow_empty=False, what="diagnose")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    m: dict[str, float] = {}
    steps, restarts = strong_attack
    bar = tqdm(total=len(DIAGNOSE_STAGES), desc=f"diagnose eps={eps:.3g}", disable=not progress, leave=False)

    def correct_after(attack: Attack) -> torch.Tensor:
        bar.set_postfix_str(attack.name)
        correct = correct_under(model, attack, x, y, batch_size)
        bar.update(1)
        return correct

    clean = predict(model, x, batch_size) == y
    fgsm_correct = correct_after(Attack("FGSM", fgsm, dict(eps=eps)))
    pgd_correct = correct_after(Attack("PGD-20", pgd, dict(eps=eps, steps=20, seed=seed)))
    strong_correct = correct_after(Attack(f"PGD-{steps}x{restarts}", pgd, dict(
        eps=eps, steps=steps, restarts=restarts, seed=seed + 1, early_stop=True)))
    large_correct = correct_after(Attack(f"PGD-20 at eps {large_eps:g}", pgd, dict(eps=large_eps, steps=20, seed=seed)))
    m["clean_acc"] = _mean(clean)
    m["fgsm_acc"] = _mean(fgsm_correct)
    m["fgsm_robust_acc"] = _mean(clean & fgsm_correct)
    m["pgd20_robust_acc"] = _mean(clean & pgd_correct)
    m["strong_pgd_worst_case"] = _mean(clean & pgd_correct & strong_correct)
    m["large_eps_acc"] = _mean(large_correct)

    flags = {}

    def add(name, value, threshold, above=True, detail=""):
        raised = (value > threshold if above else value < threshold) if not math.isnan(value) else False
        flags[name] = Flag(name, raised, value, threshold, above, EXPLANATIONS[name], detail)

    add("fgsm_above_clean", m["fgsm_acc"] - m["clean_acc"], 0.0,
        detail=f"(FGSM {m['fgsm_acc']:.3f} vs clean {m['clean_acc']:.3f})")
    add("single_step_far_above_multi_step", m["fgsm_robust_acc"] - m["pgd20_robust_acc"], 0.3,
        detail=f"(FGSM {m['fgsm_robust_acc']:.3f} vs PGD-20 {m['pgd20_robust_acc']:.3f})")
    bar.set_postfix_str("training the surrogate (ce)" if surrogate == "auto" else "surrogate")
    transfer_model = _surrogate(model, data, surrogate, seed, progress)
    bar.update(1)
    if transfer_model is None:
        flags["transfer_stronger_than_white_box"] = Flag(
            "transfer_stronger_than_white_box", False, float("nan"), 0.02, True,
            EXPLANATIONS["transfer_stronger_than_white_box"], "no surrogate (pass surrogate=model or a DataBundle)")
        bar.update(1)
    else:
        transfer_correct = correct_after(Attack("transfer", transfer_attack, dict(eps=eps, surrogate=transfer_model)))
        m["transfer_robust_acc"] = _mean(clean & transfer_correct)
        add("transfer_stronger_than_white_box", m["pgd20_robust_acc"] - m["transfer_robust_acc"], 0.02,
            detail=f"(PGD-20 {m['pgd20_robust_acc']:.3f} vs transfer {m['transfer_robust_acc']:.3f})")
    add("not_zero_at_large_eps", m["large_eps_acc"], 0.1, detail=f"(PGD-20 at eps = {large_eps:g})")
    bar.set_postfix_str("loss along FGSM")
    m["non_monotone_share"] = _non_monotone_share(model, x[clean], y[clean], eps)
    bar.update(1)
    add("loss_not_monotone_along_fgsm", m["non_monotone_share"], 0.25)
    bar.set_postfix_str("gradient alignment")
    cosine, zero_share = _gradient_alignment(model, x, y, eps, seed)
    bar.update(1)
    bar.close()
    m["gradient_cosine"], m["zero_gradient_share"] = cosine, zero_share
    add("low_local_linearity", cosine, 0.2, above=False,
        detail="no sample had a non-zero input gradient at both points" if math.isnan(cosine) else "")
    add("zero_gradients", zero_share, 0.05)
    add("more_steps_still_help", m["pgd20_robust_acc"] - m["strong_pgd_worst_case"], 0.05,
        detail=f"(PGD-20 {m['pgd20_robust_acc']:.3f} vs worst case with PGD-{steps}x{restarts} "
               f"{m['strong_pgd_worst_case']:.3f})")
    return Diagnosis(eps=eps, flags=flags, measurements=m)


def _mean(mask: torch.Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else float("nan")


def _surrogate(model, data, surrogate, seed, progress: bool = False):
    if surrogate is None or isinstance(surrogate, nn.Module):
        return surrogate
    if surrogate != "auto":
        raise ValueError(f"surrogate must be a model, 'auto' or None, got {surrogate!r}")
    if not hasattr(data, "train"):
        return None
    from ..train import train_model  # the training loop imports evaluation code

    device = next(model.parameters()).device
    trained, _ = train_model("ce", data, "quick", seed=seed + 1, device=device, progress=progress)
    return trained


@torch.no_grad()
def loss_along_fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, points: int = 11, span: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy along ``clip(x + t * sign(grad_x CE))`` for ``t`` from 0 to ``span * eps``.

    Returns:
        ``(t [points], loss [B, points])``, both on the model's device.

    Example:
        >>> t, curves = loss_along_fgsm(model, x[:50], y[:50], eps=0.3)  # doctest: +SKIP
    """
    x, y, eps = prepare_inputs(model, x, y, eps)
    steps = torch.linspace(0.0, span * eps, points)
    with eval_mode(model):
        grad, _ = input_gradient(model, x, y, cross_entropy)
        direction = grad.sign()
        curve = torch.stack([cross_entropy(model((x + t * direction).clamp(0, 1)), y) for t in steps.tolist()], 1)
    return steps.to(curve.device), curve


def _non_monotone_share(model, x, y, eps, points: int = 11, tolerance: float = 0.01) -> float:
    """Share of samples whose CE along ``x + t sign(grad)`` drops by > ``tolerance`` x its range."""
    if y.numel() == 0:
        return float("nan")
    _, curve = loss_along_fgsm(model, x, y, eps, points)
    spread = (curve.max(dim=1).values - curve.min(dim=1).values).clamp_min(1e-12)
    drops = (curve[:, :-1] - curve[:, 1:]).clamp_min(0).max(dim=1).values
    return float((drops > tolerance * spread).float().mean())


def _gradient_alignment(model, x, y, eps, seed) -> tuple[float, float]:
    """Mean cosine of the input gradients at ``x`` and at ``x + eta`` (eta uniform in the ball), and the
    share of samples whose gradient at ``x`` is exactly zero. The cosine is NaN (not measured) when no
    sample has a non-zero gradient at both points."""
    x, y, eps = prepare_inputs(model, x, y, eps)
    generator = torch.Generator().manual_seed(seed)
    eta = ((2 * torch.rand(x.shape, generator=generator) - 1) * eps).to(x.device, x.dtype)
    with eval_mode(model):
        g0, _ = input_gradient(model, x, y, cross_entropy)
        g1, _ = input_gradient(model, (x + eta).clamp(0, 1), y, cross_entropy)
    g0, g1 = g0.flatten(1).double(), g1.flatten(1).double()
    zero = (g0 == 0).all(dim=1)
    usable = ~zero & (g1 != 0).any(dim=1)
    if not usable.any():  # no sample has a gradient at both points: nothing to compare
        return float("nan"), float(zero.float().mean())
    cosine = torch.nn.functional.cosine_similarity(g0[usable], g1[usable], dim=1)
    return float(cosine.mean()), float(zero.float().mean())
