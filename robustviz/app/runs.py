"""Trained models cached under ``results/``: train a recipe once, reuse it everywhere after.

The notebooks (and anything else that needs a trained model) call ``trained``: the first
call trains the recipe and writes a checkpoint after every epoch; a later call with the same
settings finds the finished checkpoint and only loads it (``train_model(..., resume=True)``
has nothing left to do), and an interrupted run continues where it stopped.

Cache keys. A run lives in ``<results>/<method>-<dataset>-<profile>-s<seed>[-n<n_train>][-x<hash>]``:

* without ``n_train`` and overrides the folder is exactly ``robustviz.app.compare.run_dir``'s, so
  ``robustviz compare``, ``robustviz train`` and the notebooks share their full-data runs;
* ``-n2000`` marks a stratified training subset (``data.load(..., n_train=2000, seed=seed)``),
  so a notebook's small model never collides with a full-data one;
* ``-x<hash>`` is the first 8 hex digits of the SHA-1 of the overrides as sorted JSON
  (``epochs=2``, ``val_size=200``, ``method_kwargs=...``); the overrides themselves are in
  the checkpoint's ``meta.json`` (``config``) and in ``run.json`` next to it.

``setup`` (called by every notebook after its parameters cell) applies the ``ROBUSTVIZ_*``
environment variables and the profile's defaults to the notebook parameters and returns a
``Course`` whose ``train``, ``data`` and ``test_split`` use them. Both profiles train every
recipe with its own settings for the profile on all of the course dataset, i.e. exactly the
runs of ``robustviz compare`` (for the quick profile, the models of docs/results-quick.md);
``N_TRAIN`` trains on a stratified subset instead (the keys then end in ``-n<size>``).

Example:
    >>> model, history = trained("pgd_at", n_train=2000, val_size=200)  # doctest: +SKIP
    >>> course = setup(profile="quick")  # doctest: +SKIP
    >>> model, history = course.train("fgsm_at")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import DataBundle, Split, load, stratified_indices
from ..train import History, default_device, train_model
from ..train.checkpoint import META_FILE, read_meta

RUN_FILE = "run.json"

# Evaluation sizes per profile (test images for accuracy, attacks and plots).
N_EVAL = {"quick": 500, "lab": 2000, "full": 2000}

ENVIRONMENT = {
    "profile": "ROBUSTVIZ_PROFILE",
    "seed": "ROBUSTVIZ_SEED",
    "dataset": "ROBUSTVIZ_DATASET",
    "n_train": "ROBUSTVIZ_N_TRAIN",
    "results": "ROBUSTVIZ_RESULTS",
    "device": "ROBUSTVIZ_DEVICE",
}


def default_results() -> Path:
    """Where runs are cached: ``$ROBUSTVIZ_RESULTS``, else the repository's ``results/``.

    In a source checkout (``pyproject.toml`` next to the package) that is the checkout's
    ``results/`` whatever the working directory (a notebook runs in ``notebooks/``);
    for an installed package it is ``results/`` in the working directory.
    """
    if os.environ.get(ENVIRONMENT["results"]):
        return Path(os.environ[ENVIRONMENT["results"]]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists():
        return checkout / "results"
    return Path("results")


def run_name(method: str, dataset: str, profile: str, seed: int, n_train: int | None = None,
             overrides: dict | None = None) -> str:
    """The cache folder name of one run (module docstring).

    Example:
        >>> run_name("pgd_at", "mnist-mini", "quick", 0)
        'pgd_at-mnist-mini-quick-s0'
        >>> run_name("pgd_at", "mnist-mini", "quick", 0, n_train=2000)
        'pgd_at-mnist-mini-quick-s0-n2000'
        >>> run_name("ce", "mnist-mini", "quick", 0, overrides={"epochs": 2}).startswith("ce-mnist-mini-quick-s0-x")
        True
    """
    tag = dataset.replace("folder:", "folder-").replace("/", "_")
    name = f"{method}-{tag}-{profile}-s{seed}"
    if n_train is not None:
        name += f"-n{int(n_train)}"
    if overrides:
        name += f"-x{overrides_hash(overrides)}"
    return name


def overrides_hash(overrides: dict) -> str:
    """First 8 hex digits of the SHA-1 of ``overrides`` as sorted JSON (tuples as lists)."""
    text = json.dumps(overrides, sort_keys=True, default=_jsonable)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def run_path(method: str, dataset: str = "mnist-mini", profile: str = "quick", seed: int = 0,
             n_train: int | None = None, results: str | Path | None = None, **overrides) -> Path:
    """The folder ``trained`` uses for these settings (whether or not it exists yet)."""
    root = Path(results) if results is not None else default_results()
    return root / run_name(method, dataset, profile, seed, n_train, overrides)


def is_finished(directory: str | Path) -> bool:
    """``True`` when ``directory`` holds a checkpoint whose last epoch is its final one."""
    if not (Path(directory) / META_FILE).exists():
        return False
    meta = read_meta(directory)
    return int(meta.get("epoch", 0)) >= int(meta.get("epochs", 1))


def trained(
    method: str,
    dataset: str = "mnist-mini",
    profile: str = "quick",
    seed: int = 0,
    n_train: int | None = None,
    results: str | Path | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    data: DataBundle | None = None,
    **overrides,
) -> tuple[nn.Module, History]:
    """Train ``method`` on ``dataset`` once and cache it; later calls load the cached run.

    Args:
        method: recipe key (``robustviz train --list``).
        dataset: dataset name for ``robustviz.data.load``.
        profile: ``"quick"``, ``"lab"`` or ``"full"`` (``robustviz.methods.PROFILES``).
        seed: seed of the model, the training run and the training subset.
        n_train: a stratified training subset of this size (``None``: the whole training set).
        results: cache root (default ``default_results()``).
        progress: show the training progress bar.
        device: where to train / load (default: CUDA if available, else the CPU).
        data: the bundle to train on, if already loaded (saves loading it again); it must be
            ``load(dataset, n_train=n_train, seed=seed)``: only its training-set size is checked.
        overrides: training settings (``TrainConfig`` fields, e.g. ``epochs=2``); part of the key.

    Returns:
        ``(model, history)``: the model in eval mode on ``device``, the per-epoch history.

    Raises:
        ValueError: if the cached checkpoint is not this run (another training set, method,
            profile, seed or settings: ``fit`` refuses to resume it and says what differs).
    """
    directory = run_path(method, dataset, profile, seed, n_train, results, **overrides)
    bundle = data if data is not None else load(dataset, n_train=n_train, seed=seed)
    if n_train is not None and len(bundle.train) != n_train:
        raise ValueError(f"data has {len(bundle.train)} training samples but n_train={n_train}")
    finished = is_finished(directory)
    device = default_device() if device is None else torch.device(device)
    model, history = train_model(method, bundle, profile, seed, device=device, checkpoint_dir=directory,
                                 resume=True, progress=progress and not finished, **overrides)
    if not (directory / RUN_FILE).exists():
        from ..methods import get

        settings = {"method": method, "dataset": dataset, "profile": profile, "seed": seed, "n_train": n_train,
                    "overrides": overrides, "config": get(method).config(bundle.family, profile, **overrides).to_dict()}
        (directory / RUN_FILE).write_text(json.dumps(settings, indent=1, default=_jsonable))
    return model.eval(), history


@dataclass
class Course:
    """The settings a notebook runs with; ``setup`` builds it.

    Attributes:
        profile: ``"quick"`` (CPU minutes), ``"lab"`` (one GPU lab session, docs/profiles.md) or
            ``"full"`` (the papers' settings; meant for a GPU). Every recipe trains with its own
            settings for the profile; ``pick`` treats ``lab`` like ``full`` (GPU-sized evaluations).
        seed, dataset: as in the notebook's parameters cell.
        n_train: training subset size (``None``: the whole training set).
        n_eval: test images used for evaluations and plots (``N_EVAL``).
        results: the cache root. device: where models train and run.
    """

    profile: str = "quick"
    seed: int = 0
    dataset: str = "mnist-mini"
    n_train: int | None = None
    n_eval: int = N_EVAL["quick"]
    results: Path = field(default_factory=default_results)
    device: torch.device = field(default_factory=default_device)

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    def pick(self, quick, full):
        """``quick`` in the quick profile, else ``full`` (lab and full; e.g. ``course.pick(200, 1000)``)."""
        return quick if self.quick else full

    def data(self, dataset: str | None = None, n_train: int | None | str = "course") -> DataBundle:
        """The course dataset with its training subset (another ``dataset``: its default sizes)."""
        if dataset is not None and dataset != self.dataset:
            return load(dataset, seed=self.seed)
        return load(self.dataset, n_train=self.n_train if n_train == "course" else n_train, seed=self.seed)

    def test_split(self, bundle: DataBundle, n: int | None = None) -> Split:
        """A stratified, seeded subset of ``n`` (default ``n_eval``) test samples of ``bundle``."""
        n = self.n_eval if n is None else n
        if n >= len(bundle.test):
            return bundle.test
        return bundle.test.subset(stratified_indices(bundle.test.y, n, self.seed))

    def finished(self, methods: Sequence[str] | None = None, **overrides) -> list[str]:
        """The recipes (of ``methods``, default all) with a finished cached run for these settings
        (and these ``overrides``, e.g. ``feat_dim=3``)."""
        from ..methods import RECIPES

        return [key for key in (methods or list(RECIPES)) if is_finished(self.path(key, **overrides))]

    def train(self, method: str, dataset: str | None = None, progress: bool = True,
              n_train: int | None | str = "course", seed: int | None = None,
              **overrides) -> tuple[nn.Module, History]:
        """``trained(method, ...)`` with the course's settings and ``overrides`` (``TrainConfig`` fields).

        ``n_train``: ``"course"`` (default) for the course's training-set size, or another size
        (``None``: all; e.g. ``2000`` for a cheaper exercise run). ``seed``: another seed than the
        course's (model, run and subset). On another ``dataset`` (e.g. the 2-D toy ``"blobs"``)
        the recipe's own defaults are used.
        """
        seed = self.seed if seed is None else seed
        if dataset is not None and dataset != self.dataset:
            return trained(method, dataset, self.profile, seed, None, self.results, progress, self.device,
                           **overrides)
        size = self.n_train if n_train == "course" else n_train
        return trained(method, self.dataset, self.profile, seed, size, self.results, progress, self.device,
                       **overrides)

    def path(self, method: str, n_train: int | None | str = "course", seed: int | None = None,
             **overrides) -> Path:
        """The cache folder ``train`` uses for ``method`` with these arguments."""
        size = self.n_train if n_train == "course" else n_train
        return run_path(method, self.dataset, self.profile, self.seed if seed is None else seed, size, self.results,
                        **overrides)

    def __str__(self) -> str:
        size = "all" if self.n_train is None else f"{self.n_train:,}"
        return (f"robustviz course: profile {self.profile}, seed {self.seed}, {self.dataset} ({size} training images; "
                f"{self.n_eval:,} test images), device {self.device}, runs cached in {self.results}")


def setup(
    profile: str = "quick",
    seed: int = 0,
    dataset: str = "mnist-mini",
    n_train: int | None = None,
    n_eval: int | None = None,
    results: str | Path | None = None,
    device: str | None = None,
    verbose: bool = True,
) -> Course:
    """The notebook's ``Course`` from its parameters cell, with environment overrides applied.

    Environment variables override the arguments when set: ``ROBUSTVIZ_PROFILE``,
    ``ROBUSTVIZ_SEED``, ``ROBUSTVIZ_DATASET``, ``ROBUSTVIZ_N_TRAIN`` (an integer or ``all``),
    ``ROBUSTVIZ_RESULTS``, ``ROBUSTVIZ_DEVICE``. (papermill sets the parameters themselves.)

    Args:
        profile: ``"quick"``, ``"lab"`` or ``"full"``. seed, dataset: the run's seed and dataset.
        n_train: training images; ``None``: all of them.
        n_eval: test images for evaluations; ``None`` picks the profile's (``N_EVAL``).
        results: cache root (default ``default_results()``). device: ``"cpu"``, ``"cuda"``
            (default: CUDA if available).
        verbose: print the settings.
    """
    env = {key: os.environ.get(name) for key, name in ENVIRONMENT.items() if os.environ.get(name)}
    profile = env.get("profile", profile)
    if profile not in N_EVAL:
        raise ValueError(f"profile must be one of {', '.join(map(repr, N_EVAL))}, got {profile!r}")
    seed = int(env.get("seed", seed))
    dataset = env.get("dataset", dataset)
    if "n_train" in env:
        n_train = None if env["n_train"].lower() in ("all", "none") else int(env["n_train"])
    course = Course(
        profile=profile, seed=seed, dataset=dataset, n_train=n_train,
        n_eval=n_eval if n_eval is not None else N_EVAL[profile],
        results=Path(results) if results is not None else default_results(),
        device=torch.device(env.get("device", device)) if env.get("device", device) else default_device(),
    )
    if verbose:
        print(course)
    return course


def _jsonable(value):
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in a run key")
