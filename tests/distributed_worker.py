"""The program ``tests/test_distributed.py`` starts with ``torchrun --nproc_per_node=2``.

Every rank runs the same scenarios and saves what it measured to ``OUT/<name>-rank<r>.pt``;
the test compares the ranks with each other and with one process. Usage:

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from robustviz import data, distributed, models
from robustviz.attacks import autoattack
from robustviz.evaluate import evaluate_robustness, ladder
from robustviz.train import fit
from robustviz.train import loop as fit_module

# Shared with the test, which repeats them in one process.
CE = dict(steps=20, batch_size=32, val_size=0, progress=False)
METHODS = {
    "pgd_at": dict(steps=4, batch_size=32, val_size=40, monitor_steps=2, method_kwargs=dict(steps=3)),
    "drp": dict(steps=4, batch_size=32, val_size=40, monitor_steps=2),
    "clustr": dict(epochs=1, batch_size=48, val_size=40, monitor_steps=2,
                   method_kwargs=dict(clusters_per_batch=4, examples_per_cluster=12, embed_batch_size=200)),
}
RESUME = dict(epochs=3, batch_size=64, val_size=40, monitor_steps=2, progress=False)
EVAL_EPS, EVAL_ATTACKS, EVAL_BATCH = (0.1, 0.2), ("fgsm", "pgd-5", "pgd-3x2-margin"), 25
LADDER_ATTACKS = ("fgsm", "pgd-5", "adaptive-5")
N_EVAL, AA_N, AA_BATCH = 110, 48, 20


def bundle(n_train: int = 640):
    return data.load("mnist-mini", n_train=n_train, n_test=200, seed=0)


def build(data_bundle, feat_dim=None, seed=0):
    return models.build("smallcnn", 10, 1, feat_dim=feat_dim, mean=data_bundle.mean, std=data_bundle.std, seed=seed)


def save(out: Path, name: str, value) -> None:
    torch.save(value, out / f"{name}-rank{distributed.rank()}.pt")


def train_ce(out: Path):
    """20 steps of plain cross-entropy (smallcnn has no BatchNorm): compared with one process."""
    mnist = bundle()
    model = build(mnist)
    fit(model, mnist, "ce", seed=3, **CE)
    save(out, "ce", model.state_dict())
    return model, mnist


_RUNS: list = []  # the runs ``fit`` made, to read their method state afterwards
_TRAIN = fit_module._Run.train


def _train_and_keep(self, *args, **kwargs):
    _RUNS.append(self)
    return _TRAIN(self, *args, **kwargs)


def train_methods(out: Path) -> None:
    """A short run of each method: the ranks must end with identical weights and method state."""
    mnist = bundle(400)
    fit_module._Run.train = _train_and_keep
    try:
        for key, settings in METHODS.items():
            model = build(mnist, feat_dim=16 if key == "drp" else None)
            history = fit(model, mnist, key, seed=1, progress=False, **settings)
            save(out, key, {"model": model.state_dict(), "method": _RUNS[-1].method.state_dict(),
                            "history": history.to_list()})
    finally:
        fit_module._Run.train = _TRAIN


def train_resumed(out: Path) -> None:
    """An uninterrupted 3-epoch run, and the same run interrupted in epoch 2 and resumed."""
    mnist = bundle(400)
    reference = build(mnist, seed=5)
    fit(reference, mnist, "fgsm_rs", seed=4, **RESUME)
    folder = out / "resumed-run"
    original, calls = fit_module._Run.train_step, {"n": 0}

    def interrupted_step(self, *args):
        calls["n"] += 1
        if calls["n"] == 8:  # in the middle of the second epoch (6 steps per epoch)
            raise KeyboardInterrupt
        return original(self, *args)

    fit_module._Run.train_step = interrupted_step
    try:
        fit(build(mnist, seed=5), mnist, "fgsm_rs", seed=4, checkpoint_dir=folder, **RESUME)
    except KeyboardInterrupt:
        pass
    finally:
        fit_module._Run.train_step = original
    resumed = build(mnist, seed=99)  # its own weights are replaced by the checkpoint's
    fit(resumed, mnist, "fgsm_rs", seed=4, checkpoint_dir=folder, resume=True, **RESUME)
    save(out, "resume", {"reference": reference.state_dict(), "resumed": resumed.state_dict()})
    try:  # the folder holds a run now: rank 0 refuses, and every rank must raise (not wait for rank 0)
        fit(build(mnist), mnist, "fgsm_rs", seed=4, checkpoint_dir=folder, **RESUME)
    except ValueError as err:
        save(out, "refusal", f"{type(err).__name__}: {err}")


def evaluate(out: Path, model, mnist) -> None:
    """Sharded evaluation of the ce model: per-sample results for the test to compare."""
    x, y = mnist.test.x[:N_EVAL], mnist.test.y[:N_EVAL]
    report = evaluate_robustness(model, x, y, EVAL_EPS, EVAL_ATTACKS, batch_size=EVAL_BATCH, seed=2, progress=False)
    climbed = ladder(model, (x, y), 0.2, attacks=LADDER_ATTACKS, n=None, batch_size=EVAL_BATCH, seed=2,
                     progress=False)
    result = autoattack(model, x[:AA_N], y[:AA_N], 0.15, version="fast", batch_size=AA_BATCH, seed=2)
    save(out, "evaluate", {"robustness": report.correct, "ladder": climbed.correct,
                           "autoattack": {"x_adv": result.x_adv, "breakdown": result.breakdown}})


def main(out: Path) -> None:
    if not distributed.init_from_env():
        raise SystemExit("run this under torchrun with 2 processes")
    torch.set_num_threads(1)
    model, mnist = train_ce(out)
    evaluate(out, model, mnist)
    train_methods(out)
    train_resumed(out)
    distributed.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
