"""AutoAttack (Croce & Hein 2020) on any robustviz model, with the per-attack breakdown.

AutoAttack is the community's reference evaluation: a fixed, parameter-free ensemble
run in a cascade (each attack only sees the samples the previous ones could not break):

* ``standard``: APGD-CE, APGD-T (targeted DLR, 9 targets), FAB-T (9 targets), Square
  (5000 queries, black-box). What RobustBench reports.
* ``rand``: APGD-CE and APGD-DLR with expectation over 20 draws, for randomised defences.
* ``fast`` [robustviz]: APGD-CE and APGD-T of ``standard`` only (no FAB-T, no Square).
  Not an official version; its accuracy is an upper bound of ``standard``'s. Use it for
  quick looks, and ``standard`` for any number you report.

The attacks come from the ``pyautoattack`` package (the original authors' code packaged
on PyPI). Their log messages (e.g. "it seems to be a randomized defense") are collected
in ``AutoAttackResult.notes`` instead of printed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import distributed
from .core import ATTACK_BATCH_SIZE, eval_mode, model_device_dtype, prepare_inputs, project_l2, project_linf

VERSIONS = ("standard", "rand", "fast")
NORMS = {"linf": "Linf", "l2": "L2"}


@dataclass
class AutoAttackResult:
    """What ``autoattack`` measured.

    Attributes:
        x_adv: adversarial examples ``[n, ...]`` (the clean input where no attack succeeded).
        y: the labels of the evaluated samples ``[n]``.
        clean_acc: clean accuracy of the ``n`` samples.
        robust_acc: accuracy after the whole cascade.
        breakdown: robust accuracy after each attack of the cascade, in order
            (``{"apgd-ce": 0.71, "apgd-t": 0.69, ...}``); the drop from one to the next is
            what that attack added.
        seconds: seconds per attack.
        version, eps, norm: the settings.
        notes: AutoAttack's own warnings about the model (randomness, dynamic defence, ...).
    """

    x_adv: torch.Tensor = field(repr=False)
    y: torch.Tensor = field(repr=False)
    clean_acc: float
    robust_acc: float
    breakdown: dict[str, float]
    seconds: dict[str, float]
    version: str
    eps: float
    norm: str
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Accuracy after each attack of the cascade, in percent, with seconds."""
        lines = [f"AutoAttack ({self.version}, {self.norm}, eps={self.eps:.4g}, n={self.y.numel()})",
                 f"{'clean':>10}: {100 * self.clean_acc:5.1f}%"]
        lines += [f"{name:>10}: {100 * acc:5.1f}%  ({self.seconds[name]:.1f} s)"
                  for name, acc in self.breakdown.items()]
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "linf",
    version: str = "standard",
    n: int | None = None,
    seed: int = 0,
    batch_size: int = ATTACK_BATCH_SIZE,
) -> AutoAttackResult:
    """Run AutoAttack on ``model`` and return the adversarial examples with the breakdown.

    Args:
        model: any classifier returning class scores ``[B, K]`` (its real decision rule);
            run in eval mode, its mode restored afterwards.
        x: inputs ``[N, ...]`` in [0, 1]; y: labels ``[N]``.
        eps: budget in [0, 1] units (L-inf 0.3 for MNIST, 8/255 for CIFAR; L2 0.5).
        norm: ``"linf"`` or ``"l2"``.
        version: ``"standard"``, ``"rand"`` or ``"fast"`` (see the module docstring).
        n: evaluate only the first ``n`` samples (default all).
        seed: seed of every random choice of the attacks (the global RNG is restored).
        batch_size: samples per attack batch.

    Returns:
        an ``AutoAttackResult``.

    Example:
        >>> result = autoattack(model, test.x[:200], test.y[:200], eps=0.3, version="fast")  # doctest: +SKIP
        >>> print(result.table())  # doctest: +SKIP
    """
    if version not in VERSIONS:
        raise ValueError(f"unknown AutoAttack version {version!r}; choose one of {VERSIONS}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {tuple(NORMS)}, got {norm!r}")
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        x, y = x[:n], y[:n]
    x_work, y_work, eps = prepare_inputs(model, x, y, eps, norm)
    device, _ = model_device_dtype(model)
    notes = _NoteCollector()
    with eval_mode(model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), notes:
        with torch.no_grad():
            robust = model(x_work).argmax(1) == y_work
        clean_acc = float(robust.float().mean())
        runner = _make_runner(model, eps, NORMS[norm], version, seed, device, num_classes=_num_classes(model, x_work))
        x_adv, breakdown, seconds = x_work.clone(), {}, {}
        for name in list(runner.attacks_to_run):
            started = time.perf_counter()
            index = torch.nonzero(robust).flatten()
            if index.numel() > 0 and eps > 0:
                runner.attacks_to_run = [name]
                attacked = _run_cascade_step(runner, x_work, y_work, index, batch_size)
                attacked = _into_ball(attacked, x_work[index], eps, norm)
                with torch.no_grad():
                    broken = model(attacked).argmax(1) != y_work[index]
                x_adv[index[broken]] = attacked[broken]
                robust[index[broken]] = False
            breakdown[name] = float(robust.float().mean())
            seconds[name] = time.perf_counter() - started
    return AutoAttackResult(
        x_adv=x_adv.to(device=x.device, dtype=x.dtype), y=y, clean_acc=clean_acc,
        robust_acc=float(robust.float().mean()), breakdown=breakdown, seconds=seconds, version=version,
        eps=eps, norm=norm, notes=notes.messages,
    )


def _run_cascade_step(runner, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, batch_size: int) -> torch.Tensor:
    """One attack of the cascade on the samples ``index`` still robust; returns their ``x_adv``.

    pyautoattack attacks them in batches of ``batch_size`` (in order) and reseeds at every
    batch. Under ``torchrun`` those same batches are dealt out to the ranks (batch ``k`` to
    rank ``k mod N``) and the results gathered, so every sample gets the attack it gets in one
    process.
    """
    if not distributed.is_active():
        attacked, _ = runner.run_standard_evaluation(x[index], y[index], batch_size=batch_size)
        return attacked
    chunks = torch.split(index, batch_size)
    mine = list(distributed.shard(len(chunks)))
    parts = [runner.run_standard_evaluation(x[chunks[k]], y[chunks[k]], batch_size=batch_size)[0] for k in mine]
    positions = [torch.arange(k * batch_size, k * batch_size + chunks[k].numel()) for k in mine]
    values = torch.cat(parts) if parts else x[:0]
    where = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.int64)
    return distributed.gather_samples(values, where.to(x.device), index.numel())


def _into_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project AutoAttack's output onto the eps-ball and [0, 1] (the attack contract; a no-op up to rounding)."""
    if norm == "linf":
        return project_linf(x_adv, x, eps)
    return project_l2(x_adv, x, eps)


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        with torch.no_grad():
            num_classes = model(x[:1]).shape[1]
    return int(num_classes)


def _make_runner(model, eps, norm, version, seed, device, num_classes):
    """A configured ``pyautoattack.AutoAttack`` whose ``attacks_to_run`` is the cascade."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as err:  # pragma: no cover - a runtime dependency
        raise ImportError("AutoAttack needs the 'pyautoattack' package: pip install pyautoattack") from err
    official = "standard" if version == "fast" else version
    runner = AutoAttack(model, eps=eps, norm=norm, version=official, seed=seed, device=device)
    runner.verbose = False
    targets = min(9, num_classes - 1)
    runner.apgd_targeted.n_target_classes = targets
    runner.fab.n_target_classes = targets
    attacks = ["apgd-ce", "apgd-t"] if version == "fast" else list(runner.attacks_to_run)
    # The DLR loss needs 3 classes and its targeted form 4 (Croce & Hein 2020, Sec. 3.2).
    attacks = [a for a in attacks if not ((a == "apgd-dlr" and num_classes < 3) or (a == "apgd-t" and num_classes < 4))]
    runner.attacks_to_run = attacks
    return runner


class _NoteCollector(logging.Handler):
    """Collects AutoAttack's warnings (logger ``auto-attack`` and ``warnings``) while active."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []
        self._catch = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)

    def __enter__(self):
        import warnings

        self.logger = logging.getLogger("auto-attack")
        self._propagate = self.logger.propagate
        self.logger.propagate = False
        self.logger.addHandler(self)
        self._catch = warnings.catch_warnings(record=True)
        self._caught = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc) -> None:
        self._catch.__exit__(*exc)
        for warning in self._caught:
            message = str(warning.message)
            if message not in self.messages:
                self.messages.append(message)
        self.logger.removeHandler(self)
        self.logger.propagate = self._propagate
