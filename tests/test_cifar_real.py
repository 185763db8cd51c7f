"""Real CIFAR-10 images through the real training pipeline, on the CPU (issue 14).

Every recipe in the ``lab`` and ``full`` profiles runs 3 optimiser steps of ``fit`` with its
real architecture (WRN-34-10 and WRN-28-10 included) and its real training attack, on JPEG
CIFAR-10 images taken from ``../shared/datasets/cifar10-jpg.tar.gz`` (only the images the tests
need are extracted, once per session). What is made small, and only that:

* the training set: ``3 * B + V`` images, so that one epoch is exactly 3 steps of ``B = 2``
  images (``steps=3``, ``batch_size=2``), plus ``V = 1`` held-out image for the per-epoch
  monitor (``val_size=1``; the monitor attack itself is the recipe's);
* ClusTR and ClusTR+QTRADES: 4 training images per class (k-means needs K = 2 non-empty
  clusters per class, and a Magnet batch needs clusters of >= 2 images for a positive
  variance), one batch per epoch (``batch_size=40``), and ``pretrain_epochs=1`` so that the 3
  steps are 1 warm-start step and 2 Magnet steps (with k-means refreshes in between) instead of
  3 warm-start steps that never reach the method;
* the precision: ``amp="off"`` (float32, what ``"auto"`` picks on the CPU; the lab
  ``drp_faithful`` asks for fp16, a GPU setting). Half precision is tested at the loss level.

Checked: the loss is finite, the network's parameters changed, and the checkpoint reloads
into a model that predicts the same scores on test images.

Without ``../shared`` the tests skip with the reason; with ``ROBUSTVIZ_REQUIRE_SHARED=1`` (CI,
``.ci/run``) they fail instead.
"""

from __future__ import annotations

import math
import os
import shutil
import tarfile
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from robustviz import data, methods, models
from robustviz.train import fit, input_statistics, load_checkpoint

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpg.tar.gz"
TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 2
BATCH, HELD_OUT, STEPS = 2, 1, 3
CLUSTR_PER_CLASS = 4  # training images per class for the ClusTR recipes (see the module docstring)
CASES = [(key, profile) for profile in ("lab", "full") for key in methods.RECIPES]


def archive_or_skip() -> Path:
    """The CIFAR-10 JPEG archive, or skip (fail under ``ROBUSTVIZ_REQUIRE_SHARED=1``)."""
    if ARCHIVE.is_file():
        return ARCHIVE
    problem = (f"no CIFAR-10 archive at {ARCHIVE} (the ../shared folder beside the repository); "
               "these tests need real CIFAR-10 images")
    if os.environ.get("ROBUSTVIZ_REQUIRE_SHARED") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


def extract_few(archive: Path, target: Path, per_split: dict[str, int]) -> Path:
    """Extract the first ``per_split[split]`` images of every class of each split into ``target``.

    Streams the archive once and stops as soon as every quota is met. Returns the
    ``cifar10-jpg`` folder (ImageFolder layout ``{train,test}/<class>/NNNN.jpg``).
    """
    taken: dict[tuple[str, str], int] = {}
    classes: set[str] = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 4 or parts[1] not in per_split:
                continue
            _, split, cls, name = parts
            classes.add(cls)
            if taken.get((split, cls), 0) >= per_split[split]:
                if len(classes) == 10 and all(taken.get((s, c), 0) >= n for s, n in per_split.items()
                                              for c in classes):
                    break
                continue
            out = target / split / cls / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
            taken[(split, cls)] = taken.get((split, cls), 0) + 1
    return target


@pytest.fixture(scope="session")
def cifar_few(tmp_path_factory) -> data.DataBundle:
    """80 training and 20 test images of real CIFAR-10 (JPEG), loaded as a folder dataset."""
    archive = archive_or_skip()
    root = extract_few(archive, tmp_path_factory.mktemp("cifar10-jpg"), {"train": TRAIN_PER_CLASS,
                                                                        "test": TEST_PER_CLASS})
    bundle = data.load(f"folder:{root}")
    assert bundle.family == "cifar" and bundle.input_shape == (3, 32, 32)
    assert len(bundle.train) == 10 * TRAIN_PER_CLASS and len(bundle.test) == 10 * TEST_PER_CLASS
    return bundle


def test_the_archive_holds_real_cifar10_images(cifar_few):
    assert cifar_few.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                 "truck"]
    x = cifar_few.train.x
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x.std()) > 0.1  # natural images, not a constant
    assert torch.bincount(cifar_few.train.y).tolist() == [TRAIN_PER_CLASS] * 10


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(("key", "profile"), CASES, ids=[f"{k}-{p}" for k, p in CASES])
def test_three_real_steps_of_every_lab_and_full_recipe(cifar_few, tmp_path, key, profile):
    torch.set_num_threads(2)
    recipe = methods.get(key)
    config = recipe.config("cifar", profile)
    overrides: dict = dict(steps=STEPS, val_size=HELD_OUT, amp="off", log_every=1)
    if config.method_kwargs.get("pretrain_epochs"):
        n_train = 10 * CLUSTR_PER_CLASS + HELD_OUT
        overrides.update(batch_size=10 * CLUSTR_PER_CLASS, method_kwargs=dict(pretrain_epochs=1))
    else:
        n_train = STEPS * BATCH + HELD_OUT
        overrides.update(batch_size=BATCH)
    bundle = replace(cifar_few, train=cifar_few.train.subset(data.stratified_indices(cifar_few.train.y, n_train)))
    run = config.updated(**overrides)
    mean, std = input_statistics(run, bundle)
    model = models.build(run.model, 10, 3, feat_dim=run.feat_dim, mean=mean, std=std, seed=0)
    assert model.build_args["name"] == config.model  # the recipe's own architecture
    before = first_conv(model).weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a method's notes about a 3-step run
        history = fit(model, bundle, key, profile, seed=0, checkpoint_dir=tmp_path, progress=False, **overrides)

    assert history.last["step"] == STEPS
    losses = [record["loss"] for record in history.records]
    assert all(math.isfinite(loss) for loss in losses), losses
    assert not torch.equal(first_conv(model).weight.detach(), before), "the network's first layer did not move"

    loaded, meta = load_checkpoint(tmp_path)
    assert (meta["method"], meta["profile"], meta["model"]["name"]) == (key, profile, config.model)
    x = cifar_few.test.x
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    shutil.rmtree(tmp_path)  # a WRN checkpoint with its optimiser state is about 0.5 GB
