"""``fit``: the one training loop every method uses."""

from __future__ import annotations

import math
import time
import warnings
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import __version__, distributed
from .._checks import check_device, check_labels
from ..attacks import pgd
from ..attacks.core import checked_inputs
from ..data import BatchIterator, DataBundle, Split, stratified_indices
from ..data.loader import _epoch_seed
from ..evaluate.core import labels_from_scores
from ..methods import Batch, Method, Recipe, Step, StepOutput, TrainConfig, get
from ..models import Normalize
from ..precision import autocast, grad_scaler, resolve_amp
from .checkpoint import (
    clear_checkpoint,
    has_checkpoint,
    read_checkpoint,
    read_meta,
    refusal,
    run_differences,
    run_lock,
    save_checkpoint,
)
from .history import History
from .meter import EpochMeter
from .schedules import make_schedule


def fit(
    model: nn.Module,
    data: DataBundle,
    method: str | Recipe = "ce",
    profile: str = "quick",
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    **overrides,
) -> History:
    """Train ``model`` in place on ``data`` with a recipe's method and settings.

    The recipe's defaults for the dataset family and ``profile`` are used, with
    ``overrides`` (any ``TrainConfig`` field, e.g. ``epochs=2, lr=0.01``) on top.

    Every epoch: the method's loss on shuffled batches (optimiser step per batch, learning
    rate from the schedule), then clean and PGD accuracy on a fixed held-out batch of
    ``val_size`` training images that are never trained on. The precision follows
    ``amp`` (``"auto"``: bf16 on Ampere-class GPUs, fp16 with a loss scaler on older ones
    such as the T4, float32 on the CPU); on CUDA images and weights are channels_last. A
    step never waits for the device: the running loss is read every ``log_every`` steps,
    and a non-finite loss stops the run there with the step it happened at.

    Determinism: epoch ``e`` reseeds every random choice (batch order, augmentation,
    attack starts) from ``(seed, e)``, so resuming from a checkpoint gives the same final
    weights as an uninterrupted run (on the CPU).

    Under ``torchrun`` (``robustviz.distributed``) every process runs ``fit`` on its own device
    with the same arguments: each trains on its part of every global batch (``batch_size`` is
    the global batch, same order as one process), the gradients are averaged over the
    processes, method state is computed on rank 0 and copied to all, and rank 0 alone writes the
    checkpoint and shows progress. docs/distributed.md says what is exact and what is not.

    Args:
        model: a ``RobustModel`` (see ``robustviz.models``); its device is used.
        data: a ``DataBundle`` from ``robustviz.data.load``.
        method: recipe key (``robustviz.methods.RECIPES``) or a ``Recipe``.
        profile: ``"quick"`` (CPU, minutes), ``"lab"`` (one GPU session, docs/profiles.md) or ``"full"``
            (the paper's setting).
        seed: seed for the held-out split, batch order and attacks.
        checkpoint_dir: if given, a checkpoint is written there after every epoch (crash-safe,
            see ``robustviz.train.checkpoint``), and no other process may write there meanwhile.
        resume: continue from the checkpoint in ``checkpoint_dir`` if there is one; it must be
            this run (same data, method, profile, seed, model and settings), else ``ValueError``.
        progress: show a ``tqdm`` progress bar with live loss and accuracy.
        overwrite: replace a checkpoint already in ``checkpoint_dir`` (its folder is emptied
            first). Without ``resume`` or ``overwrite`` an existing checkpoint is never touched:
            ``fit`` raises a ``ValueError`` that says which to pass.

    Returns:
        the ``History`` (one record per epoch).

    Example:
        >>> bundle = robustviz.data.load("mnist-mini")  # doctest: +SKIP
        >>> net = robustviz.models.build("smallcnn", 10, 1, mean=bundle.mean, std=bundle.std)  # doctest: +SKIP
        >>> history = fit(net, bundle, method="pgd_at", epochs=2)  # doctest: +SKIP
    """
    recipe = get(method) if isinstance(method, str) else method
    config = recipe.config(data.family, profile, **overrides)
    device = next(model.parameters()).device
    if distributed.init_from_env():
        check_rank_device(device)
    runner = _Run(model, data, recipe, config, profile, seed, device)
    return runner.train(checkpoint_dir, resume, progress, overwrite)


def train_model(
    method: str,
    data: DataBundle,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    **overrides,
) -> tuple[nn.Module, History]:
    """Build the recipe's model for ``data`` (seeded) and ``fit`` it. Returns ``(model, history)``.

    Example:
        >>> model, history = train_model("pgd_at", robustviz.data.load("mnist-mini"))  # doctest: +SKIP
    """
    from .. import models

    distributed.init_from_env()  # under torchrun: before "cuda" is resolved to this process's GPU
    config = get(method).config(data.family, profile, **overrides)
    mean, std = input_statistics(config, data)
    model = models.build(
        config.model, data.num_classes, data.in_channels, feat_dim=config.feat_dim, mean=mean, std=std, seed=seed,
    ).to(check_device(device))
    history = fit(model, data, method, profile, seed, checkpoint_dir, resume, progress, overwrite, **overrides)
    return model, history


def input_statistics(config: TrainConfig, data: DataBundle) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``(mean, std)`` of the model's normalisation layer for ``config.input_norm``.

    ``"dataset"``: the dataset's per-channel statistics; ``"none"``: mean 0 and std 1, so
    the network sees the raw [0, 1] pixels.

    Example:
        >>> bundle = robustviz.data.load("mnist-mini")  # doctest: +SKIP
        >>> input_statistics(get("sat_r3").config("mnist", "quick"), bundle)  # doctest: +SKIP
        ((0.0,), (1.0,))
    """
    if config.input_norm == "none":
        return (0.0,) * len(data.mean), (1.0,) * len(data.std)
    return tuple(data.mean), tuple(data.std)


def default_device() -> torch.device:
    """CUDA if available, else the CPU; under ``torchrun`` this process's GPU (``LOCAL_RANK``)."""
    if distributed.launched_by_torchrun():
        return distributed.device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_rank_device(device: torch.device) -> None:
    """Under ``torchrun``, refuse a model on another GPU than this process's (``LOCAL_RANK``)."""
    if device.type == "cuda" and device != distributed.device():
        raise ValueError(
            f"under torchrun process LOCAL_RANK={distributed.local_rank()} trains on {distributed.device()}, but "
            f"the model is on {device}: build it there (robustviz.train.default_device() or "
            "robustviz.distributed.device() gives the right one), or call robustviz.distributed.init_from_env() "
            "before moving it to 'cuda'"
        )


def holdout_size(requested: int, available: int, key: str = "fit") -> int:
    """The held-out batch for ``available`` training samples: ``requested`` (``val_size``), unless
    that is more than half of them; then a fifth of them, with a warning that says so.

    Example:
        >>> holdout_size(500, 8000)
        500
        >>> holdout_size(500, 300)  # doctest: +SKIP
        60
    """
    if requested <= available // 2:
        return requested
    size = available // 5
    warnings.warn(
        f"{key}: val_size={requested} would hold out more than half of the {available} training samples "
        f"(the held-out batch is never trained on); holding out {size} instead. Choose it yourself with "
        "val_size=... (command line: --set val_size=...), or train on more data.",
        UserWarning, stacklevel=4,
    )
    return size


def split_holdout(train: Split, size: int, seed: int) -> tuple[Split, Split]:
    """Split off a stratified, seeded held-out set of ``size`` samples (0: none)."""
    if size <= 0:
        return train, Split(train.x[:0], train.y[:0])
    held = stratified_indices(train.y, size, seed)
    mask = torch.ones(len(train), dtype=torch.bool)
    mask[held] = False
    return train.subset(torch.nonzero(mask).flatten()), train.subset(held)


class _Run:
    """The state of one training run (kept in one place so ``fit`` reads top to bottom)."""

    def __init__(self, model, data, recipe: Recipe, config: TrainConfig, profile, seed, device):
        check_labels(data.train.y, model.num_classes, "training labels")
        warn_about_input_scaling(model, config, data, recipe.key)
        size = holdout_size(config.val_size, len(data.train), recipe.key)
        if size != config.val_size:
            config = replace(config, val_size=size)
        self.model, self.data, self.recipe, self.config = model, data, recipe, config
        self.profile, self.seed, self.device = profile, seed, device
        self.method: Method = recipe.build_method(config, data.eps)
        self.eps = config.eps if config.eps is not None else data.eps
        self.train_split, held = split_holdout(data.train, config.val_size, seed)
        self.channels_last = config.channels_last and held.x.dim() == 4
        self.val_x, self.val_y = self.to_layout(held.x.to(device)), held.y.to(device)
        self.loader = BatchIterator(self.train_split, config.batch_size, device, shuffle=True, seed=seed,
                                    augment=config.augment, rank=distributed.rank(),
                                    world_size=distributed.world_size())
        self.total_steps = config.steps or config.epochs * len(self.loader)
        self.epochs = math.ceil(self.total_steps / len(self.loader))
        self.amp = resolve_amp(config.amp, device)
        self.scaler = grad_scaler(self.amp, device)
        self.method.attach(model)
        if config.sync_batchnorm and distributed.is_active():
            use_sync_batchnorm(model, device)
        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if config.compile:
            model.body.compile()
        self.trained = list(model.parameters()) + self.method.trainable_parameters()
        self.optimizer = make_optimizer(config, self.trained)
        self.running_stats = [buffer for module in model.modules() if isinstance(module, nn.modules.batchnorm._NormBase)
                              for buffer in module.buffers()]
        self.lr_at = make_schedule(config.schedule, config.lr, self.total_steps, len(self.loader),
                                   config.milestones, config.gamma, config.warmup_fraction)
        self.history = History()
        self.start_epoch, self.step = 0, 0
        self.best_state: dict | None = None  # weights of the best held-out PGD epoch (for rollback)

    def train(self, checkpoint_dir, resume: bool, progress: bool, overwrite: bool = False) -> History:
        """Train the remaining epochs; with ``checkpoint_dir``, under its lock and saving every epoch."""
        if distributed.is_active():
            return self.train_on_ranks(checkpoint_dir, resume, progress, overwrite)
        if checkpoint_dir is None:
            self.method.setup(self.model, self.train_split)
            return self.train_epochs(None, progress)
        directory = Path(checkpoint_dir)
        if self.resumes_from(directory, resume, overwrite) and is_complete(read_meta(directory)):
            self.restore(directory)  # a finished run is only read: no lock taken, nothing written
            return self.train_epochs(None, progress)
        # (a refusal above leaves the folder untouched, lock file included)
        with run_lock(directory):
            if self.resumes_from(directory, resume, overwrite):  # again: another writer may have finished
                self.restore(directory)
            else:
                if overwrite and has_checkpoint(directory):
                    clear_checkpoint(directory)
                self.method.setup(self.model, self.train_split)
            return self.train_epochs(directory, progress)

    def train_on_ranks(self, checkpoint_dir, resume: bool, progress: bool, overwrite: bool) -> History:
        """``train`` under torchrun: rank 0 alone reads the checkpoint folder, holds its lock and
        writes it; the method is set up on rank 0; every rank then starts from rank 0's state."""
        with ExitStack() as lock:
            writes_to = distributed.run_on_main(lambda: self.prepare_on_main(checkpoint_dir, resume, overwrite, lock))
            self.copy_state_from_main()
            return self.train_epochs(writes_to, progress)

    def prepare_on_main(self, checkpoint_dir, resume: bool, overwrite: bool, lock: ExitStack) -> Path | None:
        """Rank 0's part of ``train``: restore or set up; returns the folder to write (``None``: none)."""
        if checkpoint_dir is None:
            self.method.setup(self.model, self.train_split)
            return None
        directory = Path(checkpoint_dir)
        if self.resumes_from(directory, resume, overwrite) and is_complete(read_meta(directory)):
            self.restore(directory)  # a finished run is only read
            return None
        lock.enter_context(run_lock(directory))
        if self.resumes_from(directory, resume, overwrite):
            self.restore(directory)
        else:
            if overwrite and has_checkpoint(directory):
                clear_checkpoint(directory)
            self.method.setup(self.model, self.train_split)
        return directory

    def copy_state_from_main(self) -> None:
        """Rank 0's weights, optimiser, method state, position and history on every rank."""
        state = distributed.broadcast_object(on_cpu({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(), "epoch": self.start_epoch, "step": self.step,
            "best": self.best_state, "history": self.history.to_list(),
        }) if distributed.is_main() else None)
        if distributed.is_main():
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        self.start_epoch, self.step, self.best_state = state["epoch"], state["step"], state["best"]
        self.history = History(state["history"])

    def end_epoch(self, epoch: int) -> None:
        """``method.on_epoch_end``; under torchrun on rank 0 only, its result copied to every rank."""
        if not distributed.is_active():
            self.method.on_epoch_end(self.model, self.train_split, epoch)
            return
        distributed.run_on_main(lambda: self.method.on_epoch_end(self.model, self.train_split, epoch))
        method_state = distributed.broadcast_object(on_cpu(self.method.state_dict()) if distributed.is_main() else None)
        if not distributed.is_main():
            self.method.load_state_dict(method_state)
        distributed.broadcast_tensors(self.model.buffers())  # state kept in the model (cluster centres)

    def resumes_from(self, directory: Path, resume: bool, overwrite: bool) -> bool:
        """Whether training continues the checkpoint in ``directory``: only with ``resume`` and
        when it is this run. Raises the refusal (``checkpoint.refusal``) when there is a checkpoint
        that is neither to be resumed nor overwritten."""
        if overwrite or not has_checkpoint(directory):
            return False
        saved = read_meta(directory)
        differences = run_differences(saved, self.meta(0))
        if resume and not differences:
            return True
        raise refusal(directory, saved, differences, resume)

    def train_epochs(self, checkpoint_dir, progress: bool) -> History:
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not progress or not distributed.is_main(),
                   desc=f"{self.recipe.key} on {self.data.name}", unit="step", dynamic_ncols=True)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for epoch in range(self.start_epoch, self.epochs):
                record = self.run_epoch(epoch, bar)
                self.watch_overfitting(record, bar)
                self.take_notes(record)
                self.history.append(record)
                bar.set_postfix(epoch=epoch + 1, loss=f"{record['loss']:.3f}",
                                val_acc=f"{record['val_clean_acc']:.3f}",
                                val_pgd=f"{record['val_pgd_acc']:.3f}" + (" CO!" if record["co_alarm"] else ""))
                if checkpoint_dir is not None:
                    self.save(Path(checkpoint_dir), epoch + 1)
        bar.close()
        if self.config.rollback:
            self.roll_back(checkpoint_dir)
        self.optimizer.zero_grad(set_to_none=True)  # the last step's gradients are not part of the model
        if self.channels_last:  # hand the model back in the layout a reloaded checkpoint has
            self.model.to(memory_format=torch.contiguous_format)
        self.model.eval()
        distributed.barrier()  # rank 0's last checkpoint is complete before any rank returns
        return self.history

    def watch_overfitting(self, record: dict, bar) -> None:
        """Catastrophic-overfitting alarm: held-out PGD accuracy far below its best so far.

        Adds ``co_alarm`` (bool) and ``best_val_pgd_acc`` to ``record``; keeps the best
        epoch's weights in memory when ``rollback`` is on.
        """
        previous = [r.get("val_pgd_acc", float("nan")) for r in self.history.records]
        best = max((v for v in previous if v == v), default=float("-inf"))
        current = record["val_pgd_acc"]
        record["co_alarm"] = bool(current == current and best - current > self.config.co_drop)
        record["best_val_pgd_acc"] = max(best, current) if current == current else best
        if record["co_alarm"] and distributed.is_main():
            bar.write(f"{self.recipe.key}: catastrophic overfitting? held-out PGD accuracy fell from "
                      f"{best:.3f} to {current:.3f} in epoch {record['epoch']} "
                      f"(alarm at a drop > {self.config.co_drop})")
        if self.config.rollback and current == current and current >= best:
            self.best_state = {"epoch": record["epoch"],
                               "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}

    def take_notes(self, record: dict) -> None:
        """The method's warnings about this epoch (``Method.epoch_notes``): each code is warned
        about once per run and kept under ``notes`` (``{code: sentence}``) in every record it
        applies to."""
        notes = self.method.epoch_notes(record)
        if not notes:
            return
        record["notes"] = dict(notes)
        earlier = {code for r in self.history.records for code in r.get("notes", {})}
        for code in sorted(set(notes) - earlier):
            warnings.warn(notes[code], RuntimeWarning, stacklevel=2)

    def roll_back(self, checkpoint_dir) -> None:
        """Restore the best held-out PGD epoch's weights (``rollback=True``); re-save the checkpoint."""
        if self.best_state is None or self.best_state["epoch"] == self.history.last.get("epoch"):
            return
        if self.history.last.get("rolled_back_to_epoch") == self.best_state["epoch"]:
            return  # a finished run, resumed: rolled back already
        self.model.load_state_dict(self.best_state["model"])
        self.history.last["rolled_back_to_epoch"] = self.best_state["epoch"]
        if checkpoint_dir is not None:
            self.save(Path(checkpoint_dir), self.history.last["epoch"])

    def run_epoch(self, epoch: int, bar) -> dict:
        torch.manual_seed(_epoch_seed(self.seed, epoch))
        self.model.train()
        started = time.perf_counter()
        meter = EpochMeter(self.device, self.config.log_every)
        for batch in self.method.batches(self.loader, epoch):
            if self.step >= self.total_steps:
                break
            out = self.train_step(batch, epoch)
            if out is not None:  # None: this rank had no sample of a tiny last batch
                meter.add(out.loss, out.terms, out.scores, batch.y, self.step - 1)
            bar.update(1)
            if self.step % self.config.log_every == 0:
                reading = self.read(meter)
                bar.set_postfix(epoch=epoch + 1, loss=f"{reading.means['loss']:.3f}", acc=f"{reading.accuracy:.3f}")
        reading = self.read(meter)
        self.end_epoch(epoch)
        record = {"epoch": epoch + 1, "step": self.step, "lr": self.lr_at(max(self.step - 1, 0))}
        record.update(reading.means)
        record["train_acc"] = reading.accuracy
        record.update(self.monitor())
        record["seconds"] = time.perf_counter() - started
        return record

    def read(self, meter: EpochMeter):
        """Read the running means from the device; stop the run at a non-finite loss."""
        reading = meter.read(distributed.sum_over_ranks if distributed.is_active() else None)
        if reading.nonfinite is not None:
            step, value = reading.nonfinite
            raise FloatingPointError(
                f"{self.recipe.key}: the training loss became {value} at step {step}; "
                "lower the learning rate or check the method's settings"
            )
        return reading

    def train_step(self, batch: Batch, epoch: int) -> StepOutput | None:
        """One optimiser step on ``batch``, with no host-device synchronisation.

        Under torchrun ``batch`` is this rank's part of the global batch: the gradients are
        averaged over the ranks (weighted by their shares), BatchNorm's running statistics are
        rank 0's, and ``method.observe`` sees the whole batch's ``index`` and ``per_example``.
        Returns ``None`` when this rank's part is empty (a last batch smaller than the ranks).
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        if self.channels_last:
            batch = replace(batch, x=self.to_layout(batch.x))
        out = None
        if len(batch) > 0:
            with autocast(self.amp, self.device), checked_inputs(), self.rank_rng():
                out = self.method.loss(self.model, batch, Step(epoch, self.step, self.total_steps))
        self.optimizer.zero_grad(set_to_none=True)
        if out is not None:
            self.scaler.scale(out.loss).backward()
        if distributed.is_active():
            distributed.average_gradients(self.trained, len(batch))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        distributed.broadcast_tensors(self.running_stats)
        if distributed.is_active():
            batch, out = observed_everywhere(batch, out)
        if out is not None:
            self.method.observe(batch, out)
        self.step += 1
        return out

    def rank_rng(self):
        """Under torchrun: the step's own draws of the global RNG (attack starts, dropout), seeded
        from ``(seed, step, rank)`` and restored afterwards, so that every rank's global RNG stays
        in step for what must be the same everywhere (ClusTR's batches). Nothing without a group."""
        if not distributed.is_active():
            return nullcontext()
        return _seeded_fork(self.device, _epoch_seed(self.seed, self.step) + 7 * distributed.rank() + 1)

    def to_layout(self, x: torch.Tensor) -> torch.Tensor:
        """Images in the memory layout the model trains in (NHWC with ``channels_last``)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def monitor(self) -> dict:
        """Clean and robust accuracy on the fixed held-out batch (model in eval mode).

        The monitor attack runs on chunks of the training batch size: on a CPU one pass over
        500 images is slower per image than four passes over 128 (the activations no longer
        fit in the caches).
        """
        if self.val_y.numel() == 0:
            return {"val_clean_acc": float("nan"), "val_pgd_acc": float("nan")}
        self.model.eval()
        steps, size = self.config.monitor_steps, self.config.batch_size
        clean = robust = torch.zeros((), device=self.device)
        starts = range(0, self.val_y.shape[0], size)
        for start in (starts[k] for k in distributed.shard(len(starts))):  # under torchrun: this rank's chunks
            x, y = self.val_x[start:start + size], self.val_y[start:start + size]
            if self.config.monitor_attack == "ifgsm":
                x_adv = pgd(self.model, x, y, self.eps, steps=steps, step_size=self.eps / max(steps, 1),
                            random_start=False)
            else:
                x_adv = pgd(self.model, x, y, self.eps, steps=steps, seed=self.seed + start)
            with torch.no_grad():
                clean = clean + (labels_from_scores(self.model(x)) == y).sum()
                robust = robust + (labels_from_scores(self.model(x_adv)) == y).sum()
        self.model.train()
        count = self.val_y.shape[0]
        clean_count, robust_count = distributed.sum_over_ranks(torch.stack([clean, robust])).tolist()
        return {"val_clean_acc": clean_count / count, "val_pgd_acc": robust_count / count}

    def meta(self, epoch: int) -> dict:
        return {
            "model": self.model.build_args,
            "method": self.recipe.key,
            "profile": self.profile,
            "config": self.config.to_dict(),
            "dataset": {"name": self.data.name, "family": self.data.family, "eps": self.data.eps,
                        "classes": self.data.classes, "n_train": len(self.data.train)},
            "seed": self.seed,
            "epoch": epoch,
            "epochs": self.epochs,
            "step": self.step,
            "history": self.history.to_list(),
            "versions": {"robustviz": __version__, "torch": torch.__version__},
        }

    def save(self, directory: Path, epoch: int) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "method": self.method.state_dict(),
                 "epoch": epoch, "step": self.step}
        if self.best_state is not None:  # so that a resumed run rolls back to the same epoch
            state["best"] = self.best_state
        save_checkpoint(directory, self.model, self.meta(epoch), state)

    def restore(self, directory: Path) -> None:
        """Continue from the checkpoint in ``directory`` (``resumes_from`` checked that it is this run)."""
        meta, weights, state = read_checkpoint(directory, self.device)
        if state is None:
            raise ValueError(f"{directory} holds a model without its training state (train_state.pt), so it "
                             "cannot be resumed; train into another folder or pass overwrite=True")
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        self.start_epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_state = state.get("best")
        self.history = History(meta["history"])


def observed_everywhere(batch: Batch, out: StepOutput | None) -> tuple[Batch, StepOutput | None]:
    """Under torchrun: ``batch`` and ``out`` with the ``index`` and ``per_example`` of the whole
    global batch (every rank's, in rank order), so that a method's per-example state (ClusTR's
    example losses) is the same on every rank. ``x``, ``y`` and ``scores`` stay this rank's;
    ``out`` is ``None`` when this rank's part was empty and no rank measured per-example losses."""
    if batch.index is None:
        return batch, out
    index = distributed.gather_concat(batch.index.cpu())
    losses = None if out is None or out.per_example is None else out.per_example.detach().float().cpu()
    if not distributed.agree(losses is not None):  # rank 0 always has a part of the batch
        return replace(batch, index=index), out
    everyone = distributed.gather_concat(torch.zeros(0) if losses is None else losses)
    out = out or StepOutput(torch.zeros(()), torch.zeros(0, 0))
    return replace(batch, index=index), replace(out, per_example=everyone)


def _seeded_fork(device: torch.device, seed: int):
    """A context with the global RNG seeded to ``seed`` inside and restored afterwards."""
    stack = ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[device] if device.type == "cuda" else []))
    torch.manual_seed(seed)
    return stack


def on_cpu(value):
    """``value`` (nested dicts, lists, tuples) with every tensor moved to the CPU, for sending."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


def use_sync_batchnorm(model: nn.Module, device: torch.device) -> None:
    """Replace every BatchNorm layer of ``model`` by ``nn.SyncBatchNorm`` (statistics over the
    global batch), in place; GPUs only (torch's SyncBatchNorm has no CPU implementation)."""
    if device.type != "cuda":
        raise ValueError("sync_batchnorm=True needs GPUs (torch's SyncBatchNorm has no CPU implementation); "
                         "leave it off on the CPU (command line: --set sync_batchnorm=false)")
    for name, child in model.named_children():
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))


def is_complete(meta: dict) -> bool:
    """Whether a checkpoint's metadata is that of a finished run (its last epoch is its final one)."""
    return int(meta.get("epoch", 0)) >= int(meta.get("epochs", 1))


def warn_about_input_scaling(model: nn.Module, config: TrainConfig, data: DataBundle, key: str) -> None:
    """Warn when the model's normalisation layer is not the one ``config.input_norm`` asks for.

    The recipe's learning rate and weight decay assume its input scaling; ``fit`` trains the
    model as it is, but says how to build it the recipe's way.
    """
    layer = getattr(model, "normalize", None)
    if not isinstance(layer, Normalize):
        return
    mean, std = input_statistics(config, data)
    if layer.mean.numel() == len(mean) and torch.allclose(layer.mean.cpu(), torch.tensor(mean), atol=1e-6) \
            and torch.allclose(layer.std.cpu(), torch.tensor(std), atol=1e-6):
        return
    wanted = "raw [0, 1] pixels (mean 0, std 1)" if config.input_norm == "none" else f"mean {mean}, std {std}"
    warnings.warn(
        f"{key} expects input_norm={config.input_norm!r} ({wanted}), but this model normalises with mean "
        f"{tuple(round(v, 4) for v in layer.mean.tolist())}, std {tuple(round(v, 4) for v in layer.std.tolist())}; "
        "its learning rate and weight decay assume the recipe's scaling. Build the model with "
        "robustviz.train.train_model (or models.build(..., mean=..., std=...) with "
        "robustviz.train.input_statistics), or pass input_norm=... to fit to train it as it is.",
        UserWarning, stacklevel=4,
    )


def make_optimizer(config: TrainConfig, params: list) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam, with the config's learning rate and weight decay.

    Adam runs its fused implementation on the CPU and CUDA: one kernel for all parameters, and
    no host read of its step counters (the for-loop version reads one per parameter per step).
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose 'sgd' or 'adam'")
