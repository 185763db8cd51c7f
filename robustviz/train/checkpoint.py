"""Checkpoints: plain state dicts plus JSON metadata, loaded with ``weights_only=True``.

A checkpoint is a folder:

* ``model.pt``: ``model.state_dict()`` (includes method state kept in the model, such as
  prototypes or cluster centres held by its head);
* ``train_state.pt``: optimiser and method state, epoch and step, for resuming;
* ``meta.json``: how to rebuild the model, the recipe, the full training config, the
  dataset, the seed and the history, plus the size and SHA-256 of the two ``.pt`` files
  it belongs to (``files``) and the name of the save that wrote them (``commit``);
* ``.lock``: the lock of the process writing the folder (not part of the run).

Crash safety. A save writes the new ``.pt`` files under temporary names
(``model.pt.<commit>``), then replaces ``meta.json`` in one atomic rename (the commit
point), then renames the new ``.pt`` files over the old ones. Killed before the commit, the
folder still holds the previous checkpoint (the half-written temporaries are ignored and
removed by the next writer); killed after it, ``meta.json`` names the new files, which a
reader takes from their temporary names if they were not renamed yet. Either way a reader
gets one complete checkpoint, never a mix, and the checksums in ``meta.json`` prove it.

One writer at a time. ``run_lock`` holds an exclusive lock (``fcntl.flock``, released by the
operating system even when a process is killed) for as long as a run trains into the folder;
a second writer is refused with the first one's process id.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent writers are not detected there
    fcntl = None

MODEL_FILE, STATE_FILE, META_FILE, LOCK_FILE = "model.pt", "train_state.pt", "meta.json", ".lock"
WEIGHT_FILES = (MODEL_FILE, STATE_FILE)
FORMAT_VERSION = 2
READ_ATTEMPTS = 5  # re-reads of a folder that a writer changed while it was being read

_HELD_LOCKS: dict[str, int] = {}  # folders this process has locked -> nesting depth


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used as asked: corrupt, from another run, or in use."""


# ---- writing ----------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    meta: dict,
    train_state: dict | None = None,
) -> Path:
    """Write ``model``'s weights, ``meta`` (JSON) and optionally ``train_state`` to ``directory``.

    Crash-safe as a whole (module docstring): killed at any moment, the folder holds either
    the previous checkpoint or this one. Takes the folder's lock unless this process holds it.

    Example:
        >>> save_checkpoint("results/mine", model, {"method": "ce"})  # doctest: +SKIP
    """
    directory = Path(directory)
    with run_lock(directory):
        finish_interrupted_save(directory)
        commit = secrets.token_hex(4)
        contents = {MODEL_FILE: model.state_dict()}
        if train_state is not None:
            contents[STATE_FILE] = train_state
        files = {name: _write_staged(directory / f"{name}.{commit}", obj) for name, obj in contents.items()}
        record = {"format": FORMAT_VERSION, **meta, "files": files, "commit": commit}
        _write_atomically(directory / META_FILE, json.dumps(record, indent=1, default=_jsonable).encode())
        _move_staged_files(directory, commit)
        if train_state is None:
            (directory / STATE_FILE).unlink(missing_ok=True)
    return directory


def finish_interrupted_save(directory: Path) -> None:
    """Complete a save that was killed after its commit, and delete what an uncommitted one left.

    Only for the process that holds the folder's lock (it renames and deletes files).
    """
    if (directory / META_FILE).exists():
        _move_staged_files(directory, read_meta(directory).get("commit"))
    for leftover in [*directory.glob(f"{MODEL_FILE}.*"), *directory.glob(f"{STATE_FILE}.*"),
                     directory / f"{META_FILE}.tmp"]:
        leftover.unlink(missing_ok=True)


def clear_checkpoint(directory: str | Path) -> None:
    """Delete everything in ``directory`` but its lock (for ``overwrite=True``: a run trained again
    from scratch must not keep the old run's checkpoint or cached evaluations)."""
    import shutil

    for path in Path(directory).iterdir():
        if path.name == LOCK_FILE:
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _write_staged(path: Path, obj) -> dict:
    """``torch.save`` ``obj`` to ``path`` (flushed to disk); returns its size and SHA-256."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one rename: readers see the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _sync_folder(path.parent)


def _move_staged_files(directory: Path, commit: str | None) -> None:
    """Rename the committed save's ``<file>.<commit>`` over ``<file>`` (nothing to do when done)."""
    if not commit:
        return
    for name in WEIGHT_FILES:
        staged = directory / f"{name}.{commit}"
        if staged.exists():
            os.replace(staged, directory / name)
    _sync_folder(directory)


def _sync_folder(directory: Path) -> None:
    """Flush a folder's renames to disk (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- the lock ---------------------------------------------------------------------------------


@contextmanager
def run_lock(directory: str | Path) -> Iterator[Path]:
    """Hold ``directory``'s exclusive lock (creating the folder); re-entrant within one process.

    Raises ``CheckpointError`` at once, naming the holder, when another process holds it.

    Example:
        >>> with run_lock("results/mine"):  # doctest: +SKIP
        ...     save_checkpoint("results/mine", model, meta)
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    if key in _HELD_LOCKS:
        _HELD_LOCKS[key] += 1
        try:
            yield directory
        finally:
            _HELD_LOCKS[key] -= 1
        return
    fd = _acquire(directory)
    _HELD_LOCKS[key] = 1
    try:
        yield directory
    finally:
        del _HELD_LOCKS[key]
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(directory: Path) -> int:
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        holder = path.read_text().strip() or "unknown process"
        raise CheckpointError(
            f"{directory} is being written by another robustviz process ({holder}); two runs writing one "
            "folder would mix their files. Wait for that run to finish, or train into another folder "
            "(checkpoint_dir=..., command line: --out)."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
             .encode())
    return fd


# ---- reading ----------------------------------------------------------------------------------


def has_checkpoint(directory: str | Path) -> bool:
    """``True`` when ``directory`` holds a committed checkpoint (its ``meta.json``)."""
    return (Path(directory) / META_FILE).is_file()


def read_meta(directory: str | Path) -> dict:
    """The checkpoint's ``meta.json`` as a dict; errors name the file and say what to do."""
    directory = Path(directory)
    path = directory / META_FILE
    if not path.exists():
        if not directory.exists():
            raise FileNotFoundError(f"no checkpoint folder {directory}")
        raise FileNotFoundError(f"no checkpoint in {directory} ({META_FILE} missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is not valid JSON ({err}); the file was truncated or edited. Train the run again "
            "(robustviz train ... --overwrite) or restore the folder from a copy."
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} does not hold a robustviz checkpoint's metadata (a JSON object)")
    return meta


def read_checkpoint(directory: str | Path, device: torch.device | str = "cpu",
                    train_state: bool = True) -> tuple[dict, dict, dict | None]:
    """``(meta, model_state, train_state)`` of one consistent save, checked against ``meta.json``.

    ``train_state`` is ``None`` when it is not asked for or was not saved. A folder that a
    writer changes while it is read is read again.
    """
    directory = Path(directory)
    names = WEIGHT_FILES if train_state else (MODEL_FILE,)
    for _ in range(READ_ATTEMPTS):
        meta = read_meta(directory)
        try:
            states = {name: _read_verified(directory, name, meta, device) for name in names}
        except _ChangedWhileReading:
            time.sleep(0.1)
            continue
        return meta, states[MODEL_FILE], states.get(STATE_FILE)
    raise CheckpointError(f"{directory} kept changing while it was read; is a run still training into it?")


def load_state(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """``torch.load`` of one file with ``weights_only=True`` (no arbitrary code runs on load)."""
    path = Path(path)
    return _load_bytes(path.read_bytes(), path, device)


class _ChangedWhileReading(Exception):
    pass


def _read_verified(directory: Path, name: str, meta: dict, device) -> dict | None:
    """Load ``name`` of the save ``meta`` describes, after checking its size and checksum."""
    expected = meta.get("files", {}).get(name)
    staged = directory / f"{name}.{meta.get('commit')}"
    path = staged if meta.get("commit") and staged.exists() else directory / name
    if expected is None and meta.get("files") is not None:
        return None  # this save did not write the file (save_checkpoint without train_state)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if path == staged or _commit_changed(directory, meta):  # renamed by the writer meanwhile
            raise _ChangedWhileReading from None
        if name == STATE_FILE and expected is None:
            return None
        raise CheckpointError(f"{path} is missing; the checkpoint in {directory} is incomplete. Train the run "
                              "again (robustviz train ... --overwrite) or restore the folder from a copy.") from None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected["sha256"]:
        if _commit_changed(directory, meta):
            raise _ChangedWhileReading
        raise CheckpointError(
            f"refused: {path} is not the file {directory / META_FILE} describes ({len(data):,} bytes where "
            f"{expected['bytes']:,} were written, and a different SHA-256): it was truncated, replaced or copied "
            "from another run, so its weights are not the ones the metadata describes. Train the run again "
            "(robustviz train ... --overwrite) or restore the whole folder from a copy."
        )
    return _load_bytes(data, path, device)


def _commit_changed(directory: Path, meta: dict) -> bool:
    try:
        return read_meta(directory).get("commit") != meta.get("commit")
    except (OSError, ValueError):
        return True


def _load_bytes(data: bytes, path: Path, device) -> dict:
    """``torch.load(weights_only=True)`` of ``data`` read from ``path``, with errors that say what it means.

    torch's own message for a refused file suggests ``weights_only=False``, which would run
    whatever code the file holds; it is never passed on.
    """
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch raises, the file cannot be used
        text = str(err)
        if "GLOBAL" in text:  # the pickle names a Python function or class to call on load
            raise CheckpointError(
                f"refused: {path} is not a robustviz checkpoint. It holds Python objects that robustviz never "
                "saves, and loading them could run code on this machine, so it was not loaded. Use a checkpoint "
                "folder written by robustviz (train, fit or trained)."
            ) from None
        reason = ("torch's safe loader found no plain tensors in it" if "weights_only" in text.lower().replace(" ", "_")
                  else f"{type(err).__name__}: {text.splitlines()[0] if text else 'no data'}")
        raise CheckpointError(
            f"{path} is not a readable checkpoint file ({len(data):,} bytes; {reason}); it is empty, truncated "
            "or not a checkpoint at all. Train the run again (robustviz train ... --overwrite) or restore the folder."
        ) from None


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model saved in ``directory`` and load its weights.

    Raises ``FileNotFoundError`` for a folder without a checkpoint and ``CheckpointError``
    (a ``ValueError``) for one that is damaged, whose files do not belong together, or that
    is not a robustviz checkpoint; each message names the file and says what to do.

    Returns:
        ``(model, meta)``; the model is in eval mode on ``device``.

    Example:
        >>> model, meta = load_checkpoint("results/demo/pgd_at")  # doctest: +SKIP
    """
    from .. import methods, models
    from .._checks import check_device

    directory = Path(directory)
    device = check_device(device)
    meta, weights, _ = read_checkpoint(directory, device, train_state=False)
    missing = [key for key in ("model", "method", "profile", "config", "dataset") if key not in meta]
    if missing:
        raise CheckpointError(f"{directory / META_FILE} lacks {', '.join(missing)}: it is not the metadata of a "
                              "robustviz checkpoint")
    model = models.build(**meta["model"])
    classes = meta["dataset"].get("classes")
    if classes is not None and len(classes) != model.num_classes:
        raise CheckpointError(
            f"{directory / META_FILE} describes a model with {model.num_classes} classes but a dataset with "
            f"{len(classes)}; the metadata was edited or comes from another run. Train the run again."
        )
    recipe = methods.get(meta["method"])
    config = recipe.config(meta["dataset"]["family"], meta["profile"]).updated(**_config_overrides(meta))
    recipe.build_method(config, meta["dataset"]["eps"]).attach(model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        arch = meta["model"]
        raise CheckpointError(
            f"the weights in {directory / MODEL_FILE} do not fit the model {directory / META_FILE} describes "
            f"({arch.get('name')}, {arch.get('num_classes')} classes, {arch.get('in_channels')} input channels): "
            f"{str(err).splitlines()[-1].strip().rstrip('.')}. The files come from different runs; train the run "
            "again or restore the folder."
        ) from None
    return model.to(device).eval(), meta


def _config_overrides(meta: dict) -> dict:
    from ..methods import TrainConfig

    config = TrainConfig.upgrade(meta["config"])
    config["milestones"] = tuple(config.get("milestones", ()))
    return config


# ---- is it the same run? ----------------------------------------------------------------------


def run_differences(saved: dict, wanted: dict) -> list[str]:
    """What differs between a saved run's metadata and the run asked for, as short phrases.

    Compared: the dataset and its training-set size, the method, the profile, the seed, the
    model and every training setting (a setting the saved run predates counts as its default).

    Example:
        >>> run_differences(read_meta("results/ce-mnist-mini-quick-s0"), wanted)  # doctest: +SKIP
        ['dataset mnist-mini with 1000 training samples (asked: mnist-mini with 8000 training samples)']
    """
    saved, wanted = _plain(saved), _plain(wanted)
    differences = []
    for label, read in (("dataset", _dataset_label), ("method", lambda m: m.get("method")),
                        ("profile", lambda m: m.get("profile")), ("seed", lambda m: m.get("seed"))):
        if read(saved) != read(wanted):
            differences.append(f"{label} {read(saved)} (asked: {read(wanted)})")
    differences += _dict_differences(saved.get("model") or {}, wanted.get("model") or {}, "model ")
    differences += _dict_differences(_settings(saved), _settings(wanted))
    return differences


def _dict_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    return [f"{prefix}{key} {old.get(key)!r} (asked: {new.get(key)!r})"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def refusal(directory: Path, saved: dict, differences: list[str], resume: bool) -> CheckpointError:
    """The error for training into ``directory``, which holds the run ``saved`` (``differences``: vs. the asked one)."""
    progress = f"{saved.get('method')}, epoch {saved.get('epoch')} of {saved.get('epochs')}"
    elsewhere = "train into another folder (checkpoint_dir=..., command line: --out)"
    replace = "replace it (overwrite=True, command line: --overwrite)"
    if differences and resume:
        return CheckpointError(f"the checkpoint in {directory} ({progress}) was trained with different settings: "
                               f"{'; '.join(differences)}. To keep it, {elsewhere}; or {replace}.")
    if differences:
        return CheckpointError(f"{directory} already holds another run ({progress}; it differs in "
                               f"{'; '.join(differences)}). To keep it, {elsewhere}; or {replace}.")
    done = "; it is finished, so that only loads it" if saved.get("epoch") == saved.get("epochs") else ""
    return CheckpointError(f"{directory} already holds this run ({progress}). Continue it with resume=True "
                           f"(command line: --resume{done}), {elsewhere}, or {replace} to train it again from "
                           "scratch.")


def _dataset_label(meta: dict) -> str:
    dataset = meta.get("dataset", {})
    return f"{dataset.get('name')} with {dataset.get('n_train')} training samples"


def _settings(meta: dict) -> dict:
    from ..methods import TrainConfig

    return _plain(TrainConfig.upgrade(meta.get("config", {})))


def _plain(value):
    """``value`` as it reads back from JSON (tuples become lists), so saved and new runs compare equal."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")
