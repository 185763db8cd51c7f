"""Several processes, one run: what robustviz does under ``torchrun``.

``torchrun --nproc_per_node=N -m robustviz train ...`` starts N copies of the same program and
tells each one who it is through environment variables: ``RANK`` (0..N-1 over all nodes),
``WORLD_SIZE`` (N times the number of nodes), ``LOCAL_RANK`` (its GPU on this node) and
``MASTER_ADDR``/``MASTER_PORT`` (where the processes meet). This module turns that into a
``torch.distributed`` process group (gloo on the CPU, NCCL on GPUs, one GPU per process) and
holds the few operations the training loop and the evaluation need:

* who am I: ``rank``, ``world_size``, ``is_main`` (rank 0 alone writes files and prints);
* split work: ``shard`` (items ``rank, rank + N, ...``; ``BatchIterator`` gives each rank
  the samples ``rank, rank + N, ...`` of every global batch);
* put results back together: ``gather_samples`` (per-sample tensors from every rank, in the
  original order), ``sum_over_ranks``, ``agree`` (rank 0's decision for everyone);
* keep the copies identical: ``average_gradients`` (what ``DistributedDataParallel`` does
  after the backward pass), ``broadcast_module`` and ``broadcast_object`` (rank 0's weights,
  buffers and method state).

Without a process group (a notebook, a plain ``python`` run, or ``torchrun`` with one process)
every function here answers as for a single process and communicates nothing, so the
single-process code path is unchanged. ``docs/distributed.md`` says what is exact and what is
approximate.
"""

from __future__ import annotations

import atexit
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

_local_depth = 0  # > 0 inside ``local()``: this process works alone for a while


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process in all.

    Example:
        >>> launched_by_torchrun()  # a plain ``python`` or notebook process
        False
    """
    if not all(name in os.environ for name in TORCHRUN_VARIABLES):
        return False
    return int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(timeout_s: float = 1800.0) -> bool:
    """Join the process group ``torchrun`` describes in the environment; returns ``is_active()``.

    Does nothing outside ``torchrun`` (or with one process) and when a group already exists
    (idempotent: ``fit``, ``robustviz train`` and a user's script may all call it). With CUDA
    the group talks NCCL for GPU tensors and gloo for CPU tensors (``"cpu:gloo,cuda:nccl"``, so
    ``--device cpu`` also works on a GPU node) and each process takes the GPU ``LOCAL_RANK``;
    without CUDA it is gloo. The group is destroyed when the process exits.

    Args:
        timeout_s: seconds a collective may wait for the other processes before it fails.

    Example:
        >>> init_from_env()  # outside torchrun: nothing to join
        False
    """
    if not launched_by_torchrun() or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            _take_local_gpu()
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        atexit.register(destroy)
    return is_active()


def _take_local_gpu() -> None:
    local, count = local_rank(), torch.cuda.device_count()
    if local >= count:
        raise ValueError(
            f"torchrun started process LOCAL_RANK={local}, but this node has {count} GPU(s): start at most "
            f"{count} processes per node (torchrun --nproc_per_node={count} ...)"
        )
    torch.cuda.set_device(local)


def destroy() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    """Whether this process works together with others now (a group of more than one process,
    outside ``local()``)."""
    return (_local_depth == 0 and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def rank() -> int:
    """This process's number, 0..``world_size() - 1`` (0 without a group)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """The number of processes working together (1 without a group)."""
    return dist.get_world_size() if is_active() else 1


def local_rank() -> int:
    """This process's number on its node (``LOCAL_RANK``; 0 outside ``torchrun``): its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes checkpoints, files and progress bars."""
    return rank() == 0


def device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.

    Example:
        >>> device()  # doctest: +SKIP
        device(type='cuda', index=1)
    """
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


@contextmanager
def local() -> Iterator[None]:
    """Inside, this process works alone: ``is_active()`` is False, ``rank()`` 0, ``world_size()`` 1.

    For work already split between the ranks (an attack on one rank's batches), so that nothing
    called inside starts a collective the other ranks are not running.
    """
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def barrier() -> None:
    """Wait until every rank gets here (no-op without a group)."""
    if is_active():
        dist.barrier()


# ---- splitting work ----------------------------------------------------------------------------


def shard(count: int) -> range:
    """The items of ``range(count)`` this rank handles: ``rank, rank + N, rank + 2N, ...``.

    Round robin, so the ranks' shares differ by at most one item; every item belongs to exactly
    one rank.

    Example:
        >>> list(shard(5))  # one process: everything
        [0, 1, 2, 3, 4]
    """
    return range(rank(), count, world_size())


# ---- putting results back together ------------------------------------------------------------


def _comm_device(tensor: torch.Tensor) -> torch.device:
    """Where ``tensor`` travels: its GPU when NCCL is there, else the CPU (gloo); a group a user
    made with NCCL alone carries GPU tensors only."""
    backend = str(dist.get_backend())
    if backend == "nccl":
        return device()
    if tensor.device.type == "cuda" and "nccl" in backend:
        return tensor.device
    return torch.device("cpu")


def gather_concat(values: torch.Tensor) -> torch.Tensor:
    """The concatenation of every rank's ``values`` in rank order (every rank gets it).

    Ranks may hold different numbers of rows; the other dimensions must match. Without a
    group: ``values`` itself.

    Args:
        values: ``[n_rank, ...]`` this rank's rows (any dtype, bool included).
    Returns:
        ``[sum of n_rank, ...]`` on ``values``'s device and dtype.

    Example:
        >>> gather_concat(torch.tensor([3, 1]))  # one process
        tensor([3, 1])
    """
    if not is_active():
        return values
    where, dtype = _comm_device(values), values.dtype
    sent = (values.to(torch.uint8) if dtype == torch.bool else values).to(where).contiguous()
    sizes = [torch.zeros(1, dtype=torch.int64, device=where) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([sent.shape[0]], device=where))
    counts = [int(size) for size in sizes]
    padded = torch.zeros((max(counts), *sent.shape[1:]), dtype=sent.dtype, device=where)
    padded[: sent.shape[0]] = sent
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, counts)]).to(values.device, dtype)


def gather_samples(values: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """Per-sample results of every rank, put back in their original order.

    Each rank holds ``values[i]`` for the samples ``index[i]`` it processed; the samples of all
    ranks together are ``0..total-1``, each processed by exactly one rank. Every rank gets the
    full ``[total, ...]`` tensor with ``out[index[i]] = values[i]``.

    Args:
        values: ``[n_rank, ...]`` this rank's results (any dtype, bool included).
        index: ``[n_rank]`` int64 sample numbers of those results.
        total: the number of samples over all ranks.
    Returns:
        ``[total, ...]`` on ``values``'s device and dtype.

    Example:
        >>> gather_samples(torch.tensor([True, False]), torch.tensor([1, 0]), 2)
        tensor([False,  True])
    """
    out = torch.zeros((total, *values.shape[1:]), dtype=values.dtype, device=values.device)
    out[gather_concat(index).to(values.device)] = gather_concat(values)
    return out


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all ranks (every rank gets it); ``values`` unchanged
    without a group.

    Example:
        >>> sum_over_ranks(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    if not is_active():
        return values
    total = values.detach().to(_comm_device(values), copy=True)
    dist.all_reduce(total)
    return total.to(values.device)


def broadcast_object(value):
    """Rank 0's ``value`` (any picklable object: a decision, a state dict) on every rank.

    Example:
        >>> broadcast_object({"resume": True})  # one process: the value itself
        {'resume': True}
    """
    if not is_active():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0, device=_comm_device(torch.empty(0)))
    return box[0]


def agree(value):
    """Rank 0's answer to a question every rank asks (does a file exist? which branch?), so that
    all ranks take the same branch. Same as ``broadcast_object``, named for the intent."""
    return broadcast_object(value)


def raise_together(error: BaseException | None) -> None:
    """Raise on every rank when rank 0 had ``error`` (its message, same type where possible).

    Rank 0 decides alone (the checkpoint folder, the lock); the other ranks must not wait for a
    collective rank 0 will never reach.
    """
    shared = broadcast_object(None if error is None else _portable(error))
    if shared is None:
        return
    if is_main():
        raise error
    raise shared


def run_on_main(work: Callable[[], object]):
    """``work()`` on rank 0 only (e.g. k-means on the training features, reading a checkpoint);
    ``None`` on the other ranks. An exception on rank 0 is raised on every rank, so none waits
    for rank 0 forever. Without a group: ``work()``.
    """
    if not is_active():
        return work()
    result, error = None, None
    if is_main():
        try:
            result = work()
        except Exception as err:  # noqa: BLE001 - handed to every rank just below
            error = err
    raise_together(error)
    return result


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling, else a ``ValueError`` with its message."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any unpicklable exception becomes its message
        return ValueError(str(error))


# ---- keeping the copies identical -------------------------------------------------------------


def average_gradients(parameters: Iterable[torch.nn.Parameter], local_count: int) -> None:
    """Replace every gradient by the batch-weighted mean over ranks, in place.

    ``g <- (sum_r n_r g_r) / (sum_r n_r)``, where rank ``r`` computed ``g_r`` as the gradient of a
    mean over its ``n_r`` samples: for a loss that is a mean of per-sample terms this is the
    gradient of the mean over the global batch, also when the shares differ (a last, odd-sized
    batch). With equal shares it is ``DistributedDataParallel``'s average ``(1 / N) sum_r g_r``.
    The gradients and ``n_r`` travel in one flat buffer: one all-reduce per step, and no wait
    for the device to learn the global batch size. A parameter without a gradient counts as zero.

    Args:
        parameters: the trained parameters (the model's and the method's), same order on every rank.
        local_count: ``n_r``, the samples in this rank's part of the batch.

    Example:
        >>> average_gradients(model.parameters(), local_count=64)  # doctest: +SKIP
    """
    if not is_active():
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    where = _comm_device(grads[0])
    count = torch.tensor([float(local_count)], device=where, dtype=torch.float32)
    flat = torch.cat([*(g.reshape(-1).float().to(where) * local_count for g in grads), count])
    dist.all_reduce(flat)
    flat = flat[:-1] / flat[-1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank (no-op without a group)."""
    broadcast_tensors([*module.parameters(), *module.buffers()])


def broadcast_tensors(tensors: Iterable[torch.Tensor]) -> None:
    """Copy rank 0's values of ``tensors`` (same shapes, same order on every rank) into them, in place.

    ``fit`` broadcasts BatchNorm's running statistics after every step, as
    ``DistributedDataParallel`` does, so every rank attacks and evaluates the same model.
    """
    if not is_active():
        return
    for tensor in tensors:
        carried = tensor.data.to(_comm_device(tensor))
        dist.broadcast(carried, src=0)
        if carried.data_ptr() != tensor.data.data_ptr():
            tensor.data.copy_(carried)
