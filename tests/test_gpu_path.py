"""The GPU path, checked on the CPU: precision per device, half-precision losses, and a
training step that never waits for the device."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from robustviz import data, methods, models
from robustviz.methods import Batch, Step
from robustviz.precision import grad_scaler, resolve_amp
from robustviz.train import fit, input_statistics, train_model


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16"),
                                                       ((6, 1), "fp16")])
def test_auto_precision_follows_the_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_amp("auto", torch.device("cuda")) == expected
    scaler = grad_scaler(expected, torch.device("cuda")) if torch.cuda.is_available() else None
    if scaler is not None:
        assert scaler.is_enabled() == (expected == "fp16")


def test_auto_precision_is_off_on_the_cpu_and_explicit_modes_are_kept():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) == "off"
    assert [resolve_amp(mode, cpu) for mode in ("bf16", "fp16", "off")] == ["bf16", "fp16", "off"]
    assert not grad_scaler("off", cpu).is_enabled() and not grad_scaler("bf16", cpu).is_enabled()
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_amp("half", cpu)
    with pytest.raises(ValueError, match="amp"):
        methods.get("ce").config("mnist", "quick", amp=True)


# ---- every recipe's loss under CPU bf16 autocast ------------------------------------------

# |bf16 - fp32| <= RELATIVE * |fp32| + ABSOLUTE: bf16 keeps 8 bits of mantissa (2-3 significant
# digits), and every layer of the network rounds its output to it.
RELATIVE, ABSOLUTE = 0.02, 0.01  # measured: at most 0.23 % (trades), after 20 training steps


@pytest.fixture(scope="module")
def small_batch():
    bundle = data.load("mnist-mini", n_train=400, n_test=20, seed=0)
    return bundle, bundle.train.x[:32], bundle.train.y[:32]


def trained(key: str, bundle, steps: int = 20):
    """The recipe's quick model after ``steps`` steps of ``fit`` (so its outputs are not all ~0), and
    a method built from the same settings, set up on ``bundle``."""
    recipe = methods.get(key)
    config = recipe.config("mnist", "quick")
    mean, std = input_statistics(config, bundle)
    model = models.build(config.model, bundle.num_classes, bundle.in_channels, feat_dim=config.feat_dim,
                         mean=mean, std=std, seed=0)
    fit(model, bundle, key, steps=steps, val_size=50, monitor_steps=1, progress=False,
        **({} if key.startswith("clustr") else {"batch_size": 32}))
    method = recipe.build_method(config, bundle.eps)  # fit has attached its head (prototypes, clusters)
    method.setup(model, bundle.train)
    return model.train(), method


@pytest.mark.parametrize("key", list(methods.RECIPES))
def test_every_recipe_loss_is_finite_and_close_to_float32_under_bf16_autocast(small_batch, key):
    bundle, x, y = small_batch
    model, method = trained(key, bundle)
    batch, step = Batch(x, y), Step(epoch=1, index=99, total=100)  # the end of training: full eps
    losses = []
    for autocast in (False, True):
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = method.loss(model, batch, step)
        losses.append(out.loss.detach())
    full, half = (float(v) for v in losses)
    assert losses[1].dtype == torch.float32, "loss terms compute in float32 inside autocast"
    assert math.isfinite(half)
    assert abs(half - full) <= RELATIVE * abs(full) + ABSOLUTE, (key, full, half)


# ---- host synchronisations per training step ----------------------------------------------


class CountScalarReads(TorchDispatchMode):
    """Counts ``aten._local_scalar_dense``: every ``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``.

    On a GPU each one makes the host wait for every queued kernel. (A bulk ``tolist()`` is not
    dispatched; the training loop reads its running means that way once per ``log_every``
    steps, one transfer.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def scalar_reads_during_fit(key: str, bundle, steps: int) -> int:
    config = methods.get(key).config("mnist", "quick")
    mean, std = input_statistics(config, bundle)
    model = models.build(config.model, 10, 1, feat_dim=config.feat_dim, mean=mean, std=std, seed=0)
    with CountScalarReads() as counter:
        fit(model, bundle, key, steps=steps, val_size=50, monitor_steps=1, progress=False, log_every=10,
            **({} if key.startswith("clustr") else {"batch_size": 32}))
    return counter.count


@pytest.fixture(scope="module")
def sync_data():
    """Enough images that 21 steps stay within one epoch for every recipe (ClusTR: batches of 128)."""
    return data.load("mnist-mini", n_train=3000, n_test=20, seed=0)


@pytest.mark.parametrize("key", ["ce", "pgd_at", "trades", "clustr", "adr"])
def test_a_training_step_reads_nothing_back_from_the_device(sync_data, key):
    """Per-step reads = (reads in a 21-step run - reads in a 1-step run) / 20; the runs share the
    set-up and the per-epoch monitoring, so the difference is the steps' own."""
    short = scalar_reads_during_fit(key, sync_data, steps=1)
    long = scalar_reads_during_fit(key, sync_data, steps=21)
    per_step = (long - short) / 20
    assert per_step <= 0.1, f"{key}: {per_step:.2f} host reads per training step"


def test_a_nonfinite_loss_still_stops_the_run_with_its_step(small_batch):
    bundle, _, _ = small_batch
    with pytest.raises(FloatingPointError, match=r"became (nan|inf) at step \d+"):
        train_model("ce", bundle, steps=30, val_size=50, progress=False, device="cpu", lr=1e12, optimizer="sgd",
                    log_every=7)


def test_scalar_reads_are_counted():
    with CountScalarReads() as reads:
        float(torch.ones(2).sum())
        bool(torch.ones(2).any())
    assert reads.count == 2


# ---- evaluation: float32 unless asked ----------------------------------------------------

def conv_dtypes(model) -> tuple[list, object]:
    """Record the dtype of every output of the model's first convolution."""
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return seen, conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))


@pytest.mark.parametrize("view", ["evaluate_robustness", "ladder"])
def test_evaluation_attacks_run_in_float32_by_default_and_under_autocast_when_asked(view):
    from robustviz.evaluate import evaluate_robustness, ladder
    bundle = data.load("mnist-mini", n_train=100, n_test=40, seed=0)
    model = models.build("lenet5", 10, 1, seed=0).eval()
    x, y = bundle.test.x, bundle.test.y

    def run(amp):
        if view == "ladder":
            return ladder(model, (x, y), eps=0.1, attacks=("fgsm", "pgd-3"), progress=False, amp=amp).worst_case
        return evaluate_robustness(model, x, y, eps=0.1, attacks=("pgd-3",), progress=False, amp=amp).results

    seen, hook = conv_dtypes(model)
    run("off")
    assert seen and set(seen) == {torch.float32}
    seen.clear()
    run("bf16")
    hook.remove()
    assert torch.bfloat16 in seen, "amp='bf16' runs the attack's forward passes under autocast"
    assert all(p.dtype == torch.float32 for p in model.parameters()), "autocast leaves the weights in float32"
    with pytest.raises(ValueError, match="amp must be one of"):
        run("half")
