"""Count the floating-point operations of any code, attacks included.

``torch.utils.flop_counter.FlopCounterMode`` attributes FLOPs to modules with backward hooks,
which PyTorch does not support inside ``torch.autograd.grad`` (every attack's input gradient).
``CountFlops`` uses the same per-operator formulas (``torch.utils.flop_counter.flop_registry``:
convolutions, matrix products, attention, with their backward passes) without module hooks.

Example:
    >>> with CountFlops() as flops:  # doctest: +SKIP
    ...     method.loss(model, batch).loss.backward()
    >>> flops.total  # doctest: +SKIP
"""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class CountFlops(TorchDispatchMode):
    """Sum of the FLOPs of every operator with a formula in ``flop_registry`` (others count 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


# ---------------------------------------------------------------------------------------------
# Cost accounting of every recipe (issue 14): ``python bench/flops.py [--families cifar mnist]``
# ---------------------------------------------------------------------------------------------

# Dense peak tensor throughput of the half precision a run uses (``amp="auto"``: fp16 on the T4,
# bf16 from Ampere on), FLOP/s, from the vendors' data sheets; and the float32 (no TF32) peaks
# for runs with ``amp="off"``.
PEAK_HALF = {"T4": 65e12, "A100": 312e12, "H100": 989e12}
PEAK_FP32 = {"T4": 8.1e12, "A100": 19.5e12, "H100": 67e12}
TRAIN_IMAGES = {"cifar": 50_000, "mnist": 60_000}
SHAPES = {"cifar": (3, 32, 32), "mnist": (1, 28, 28)}
EPS = {"cifar": 8 / 255, "mnist": 0.3}


def _affine(count, b1: int, b2: int) -> tuple[float, float]:
    """``(a, b)`` with ``count(B) = a + b B``, from counts at two batch sizes.

    Every recipe's step is affine in the batch size B: per-image work (forward, backward,
    attack steps) plus per-batch work (SAT-R1's I-FGSM on one image, ClusTR's head)."""
    f1, f2 = count(b1), count(b2)
    slope = (f2 - f1) / (b2 - b1)
    return f1 - slope * b1, slope


def _batch(family: str, size: int, groups_of: int | None = None):
    import torch

    from robustviz.methods import Batch

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(size, *SHAPES[family], generator=gen)
    if groups_of is None:
        return Batch(x, torch.arange(size) % 10)
    groups = torch.arange(size // groups_of).repeat_interleave(groups_of)  # ClusTR: M clusters of d examples
    return Batch(x, groups % 10, groups=groups)


def recipe_cost(key: str, family: str, profile: str) -> dict:
    """FLOPs of one recipe's training run, counted on the CPU with ``CountFlops``.

    ``step``: one optimiser step at the config's batch size B (``method.loss`` with its
    training attack, then ``loss.backward()``), extrapolated from B = 1 and 2 with ``_affine``
    (ClusTR's Magnet steps: B = M * D from 1 and 2 examples per cluster). ``monitor``: the
    held-out check after every epoch (the monitor attack on ``val_size`` images plus two clean
    forward passes), counted the same way. ``refresh``: ClusTR's per-epoch embedding of the
    training images (one forward pass each; its k-means runs on the host and is not counted).
    An epoch has ``S = ceil(n / B)`` steps, ``n = N_train - val_size``; its FLOPs are
    ``S * a + n * b`` for a step count ``a + b B`` (the last batch is partial). Units: FLOP.
    """
    import math
    import warnings

    import torch

    from robustviz import models
    from robustviz.attacks import pgd
    from robustviz.methods import Step, get

    torch.manual_seed(0)
    recipe = get(key)
    config = recipe.config(family, profile)
    channels = SHAPES[family][0]
    model = models.build(config.model, 10, channels, feat_dim=config.feat_dim, seed=0)
    method = recipe.build_method(config, EPS[family])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # drp_faithful's prototype geometry: not about cost
        method.attach(model)
    n = TRAIN_IMAGES[family] - config.val_size
    kwargs = config.method_kwargs
    pretrain = int(kwargs.get("pretrain_epochs", 0))
    clustered = "clusters_per_batch" in kwargs

    def step_flops(size: int, epoch: int, groups_of: int | None = None) -> float:
        model.train()
        batch = _batch(family, size, groups_of)
        with CountFlops() as flops:
            out = method.loss(model, batch, Step(epoch=epoch, index=0, total=1))
            out.loss.backward()
        model.zero_grad(set_to_none=True)
        return flops.total

    def monitor_flops(size: int) -> float:
        model.eval()
        batch = _batch(family, size)
        steps = config.monitor_steps
        with CountFlops() as flops:
            if config.monitor_attack == "ifgsm":
                x_adv = pgd(model, batch.x, batch.y, EPS[family], steps=steps, step_size=EPS[family] / steps,
                            random_start=False)
            else:
                x_adv = pgd(model, batch.x, batch.y, EPS[family], steps=steps, seed=0)
            with torch.no_grad():
                model(batch.x), model(x_adv)
        return flops.total

    def features_flops(size: int) -> float:
        model.eval()
        with CountFlops() as flops, torch.no_grad():
            model.features(_batch(family, size).x)
        return flops.total

    b = config.batch_size
    steps_per_epoch = math.ceil(n / b)
    a_mon, b_mon = _affine(monitor_flops, 1, 2)
    monitor = math.ceil(config.val_size / b) * a_mon + config.val_size * b_mon
    epochs = []  # (label, count, FLOPs per step at B, FLOPs per epoch)
    if clustered:
        a_f, b_f = _affine(features_flops, 1, 2)
        refresh = n * b_f + math.ceil(n / int(kwargs.get("embed_batch_size", 500))) * a_f
        if pretrain:
            a, s = _affine(lambda size: step_flops(size, 0), 1, 2)
            epochs.append(("warm start", pretrain, a + s * b, steps_per_epoch * a + n * s + monitor + refresh))
        m, d = kwargs["clusters_per_batch"], kwargs["examples_per_cluster"]
        a, s = _affine(lambda size: step_flops(size, pretrain, groups_of=size // m), m, 2 * m)
        per_step = a + s * m * d
        epochs.append(("magnet", config.epochs - pretrain, per_step, steps_per_epoch * per_step + monitor + refresh))
    else:
        a, s = _affine(lambda size: step_flops(size, 0), 1, 2)
        epochs.append(("", config.epochs, a + s * b, steps_per_epoch * a + n * s + monitor))
    total = sum(count * epoch for _, count, _, epoch in epochs)
    return {"key": key, "family": family, "profile": profile, "model": config.model, "batch": b,
            "epochs": config.epochs, "amp": config.amp, "phases": epochs, "monitor": monitor, "total": total}


def projection_seconds(flops: float, device: str, utilisation: float, amp: str) -> float:
    """Projected time: ``flops / (peak * utilisation)``, seconds; ``peak`` is the half-precision
    tensor peak (``PEAK_HALF``), or the float32 peak (``PEAK_FP32``) for ``amp="off"``."""
    peak = (PEAK_FP32 if amp == "off" else PEAK_HALF)[device]
    return flops / (peak * utilisation)


def _number(value: float, digits: int, small: float) -> str:
    """``value`` with ``digits`` decimals, or two significant digits below ``small``."""
    return f"{value:,.{digits}f}" if value >= small else f"{value:.2g}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys
    import time
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from robustviz.methods import RECIPES

    parser = argparse.ArgumentParser(description="FLOPs per training step and epoch of every recipe (lab and "
                                     "full profiles) and projected training times on T4, A100 and H100.")
    parser.add_argument("--families", nargs="+", default=["cifar", "mnist"], choices=sorted(TRAIN_IMAGES))
    parser.add_argument("--profiles", nargs="+", default=["lab", "full"])
    parser.add_argument("--methods", nargs="+", default=list(RECIPES))
    parser.add_argument("--utilisation", type=float, default=0.15,
                        help="fraction of the peak a training run sustains (default 0.15)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    started = time.perf_counter()
    u = args.utilisation
    print(f"Projections until measured: time = FLOPs / (peak x {u:.0%}); peaks (dense, FLOP/s): "
          + ", ".join(f"{d} {p / 1e12:g}T" for d, p in PEAK_HALF.items())
          + " half precision; amp=off runs: " + ", ".join(f"{d} {p / 1e12:g}T" for d, p in PEAK_FP32.items())
          + " (float32). Step = one optimiser step with its training attack (forward and backward), at the "
          "config's batch; epoch = all steps on N_train - val_size images + the held-out monitor "
          "(+ ClusTR's per-epoch embedding of the training set).\n")
    header = ("| recipe | family | profile | model | batch | epochs | GFLOP / step | TFLOP / epoch | "
              "PFLOP total | T4 epoch | T4 total | A100 total | H100 epoch | H100 total |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for family in args.families:
        for key in args.methods:
            for profile in args.profiles:
                cost = recipe_cost(key, family, profile)
                phases = cost["phases"]
                step = " / ".join(_number(p[2] / 1e9, 0, 10) for p in phases)
                epoch = " / ".join(_number(p[3] / 1e12, 1, 1) for p in phases)
                epochs = " + ".join(str(p[1]) for p in phases)
                t4_epoch = " / ".join(_duration(projection_seconds(p[3], "T4", u, cost["amp"])) for p in phases)
                h100_epoch = " / ".join(_duration(projection_seconds(p[3], "H100", u, cost["amp"])) for p in phases)
                totals = {d: _duration(projection_seconds(cost["total"], d, u, cost["amp"])) for d in PEAK_HALF}
                amp = " (fp32)" if cost["amp"] == "off" else ""
                total = _number(cost["total"] / 1e15, 2, 0.1)
                print(f"| {key} | {family} | {profile} | {cost['model']}{amp} | {cost['batch']} | {epochs} | {step} | "
                      f"{epoch} | {total} | {t4_epoch} | {totals['T4']} | {totals['A100']} | "
                      f"{h100_epoch} | {totals['H100']} |", flush=True)
    print(f"\n(counted in {time.perf_counter() - started:.0f} s on the CPU; torch {torch.__version__})")


if __name__ == "__main__":
    main()
