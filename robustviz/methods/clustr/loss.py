"""The Magnet loss as ClusTR trains with it, and the ClusTR+QTRADES consistency terms.

Papers: Alfarra et al. 2020, ClusTR, https://arxiv.org/abs/2006.07682; Rippel et al. 2016,
the Magnet loss, https://arxiv.org/abs/1511.05939. Formulas and pitfalls: README.md in this
folder, sections "Magnet loss (training objective)" and "ClusTR+QTRADES".

A minibatch holds M clusters of examples. For example n with embedding ``r_n`` in batch
cluster ``m(n)`` of class ``y_n``:

* batch cluster means ``mu_m = mean of r_n over the batch members of cluster m``
  (recomputed from the batch, not the k-means centres);
* one scalar variance over all embedding dimensions,
  ``sigma^2 = sum_n ||r_n - mu_m(n)||^2 / (N - 1)`` (not per dimension, not squared again);
* ``l_n = max(0, -log( exp(-||r_n - mu_m(n)||^2 / (2 sigma^2) - alpha)
  / (sum_{m': class(m') != y_n} exp(-||r_n - mu_m'||^2 / (2 sigma^2)) + floor) + floor ))``.

The denominator runs over the batch clusters of *other* classes only (the impostors); the
example's own cluster and its same-class sibling clusters are excluded. ``sigma^2`` is not
detached, so gradients flow through it, as in the official ClusTR code.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..._precision import at_least_float32
from ...geometry import squared_distances

CONSISTENCY_KINDS = ("ce", "kl", "mse")


class MagnetTerms(NamedTuple):
    """What ``magnet_loss`` returns: the loss, its per-example values and the batch statistics.

    Attributes:
        loss: scalar, the mean of ``per_example``.
        per_example: ``[N]`` hinged losses ``l_n`` (the neighbourhood sampler stores them).
        variance: scalar ``sigma^2`` of the batch (squared feature units).
        cluster_means: ``[M, d]`` batch cluster means.
    """

    loss: torch.Tensor
    per_example: torch.Tensor
    variance: torch.Tensor
    cluster_means: torch.Tensor


def batch_cluster_means(z: torch.Tensor, cluster: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Mean embedding of every batch cluster: ``mu_m = mean of z_n over the members n of m``.

    Args:
        z: embeddings ``[N, d]`` (feature units).
        cluster: batch cluster of every example ``[N]`` (int64), values in ``[0, num_clusters)``.
        num_clusters: M, the number of batch clusters.
    Returns:
        ``[M, d]`` means, differentiable with respect to ``z`` (0 for a cluster with no member).

    Example:
        >>> batch_cluster_means(torch.tensor([[0.0], [2.0], [5.0]]), torch.tensor([0, 0, 1]), 2)
        tensor([[1.],
                [5.]])
    """
    sums = z.new_zeros(num_clusters, z.shape[1]).index_add(0, cluster, z)  # [M, d]
    counts = cluster_sizes(cluster, num_clusters).to(z.dtype)  # [M]
    return sums / counts.clamp_min(1)[:, None]


def cluster_sizes(cluster: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Members of every batch cluster, ``[M]`` (int64).

    A ``bincount`` with a fixed length: ``torch.bincount``'s length depends on the largest id,
    which a GPU would have to report to the host first.

    Args:
        cluster: batch cluster of every example ``[N]`` (int64), values in ``[0, num_clusters)``.
        num_clusters: M.
    Returns:
        ``[M]`` counts.

    Example:
        >>> cluster_sizes(torch.tensor([0, 0, 2]), 3)
        tensor([2, 0, 1])
    """
    return torch.zeros(num_clusters, dtype=torch.int64, device=cluster.device).index_add_(
        0, cluster, torch.ones_like(cluster))


def magnet_loss(
    z: torch.Tensor,
    cluster: torch.Tensor,
    y: torch.Tensor,
    alpha: float = 12.5,
    floor: float = 1e-8,
    validate: bool = True,
) -> MagnetTerms:
    """The minibatch Magnet loss of a batch of embeddings, with its per-example values.

    ``l_n = max(0, -log(exp(-||r_n - mu_m(n)||^2 / (2 sigma^2) - alpha) / (D_n + floor) + floor))``
    with ``D_n`` the sum of the impostor kernels (module docstring) and the loss ``mean_n l_n``.

    The formula is evaluated in the log domain: ``log(D + floor)`` is a ``logsumexp`` over the
    impostor log-kernels plus a ``log(floor)`` column, and ``-log(ratio + floor)`` is
    ``-logaddexp(log ratio, log floor)``. This is the same number as the official code's
    ``exp``-then-``log`` formula wherever that one does not underflow, and it stays exact
    (with finite gradients) where it does; same-class clusters are masked with ``-inf``
    in log space, i.e. *after* exponentiation (README.md, "Masking before exponentiating").

    Args:
        z: embeddings ``[N, d]`` in feature units (cast to float32 or kept in float64), ``N >= 2``.
        cluster: batch cluster of each example ``[N]`` (int64), values ``0..M-1``; all
            members of a cluster must share a class.
        y: class of each example ``[N]`` (int64).
        alpha: the margin, in nats of the kernel exponent ``||r - mu||^2 / (2 sigma^2)``
            (ClusTR: 12.5; Magnet paper: 1.0).
        floor: the ``1e-8`` added inside and outside the log in the official code; ``> 0``.
        validate: check the cluster ids and the batch variance (reads values back from the
            device). ``False`` trusts a sampler that built the batch (ClusTR's training
            step): the loss then runs without waiting for the device, ``cluster_means`` has one
            row per example (rows of ids no example has are 0) and a zero variance gives NaN.
    Returns:
        ``MagnetTerms(loss [], per_example [N], variance [], cluster_means [M, d])``.

    Example:
        >>> z = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> out = magnet_loss(z, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1]), alpha=1.0)
        >>> out.per_example.shape
        torch.Size([4])
    """
    z = at_least_float32(z)
    if validate:
        cluster_classes = _check_magnet_inputs(z, cluster, y, floor)
        present = torch.ones_like(cluster_classes, dtype=torch.bool)
    else:  # ids are < N; ids no example has take no part
        cluster_classes = torch.zeros(z.shape[0], dtype=y.dtype, device=y.device).scatter_(0, cluster, y)
        present = cluster_sizes(cluster, z.shape[0]) > 0
    means = batch_cluster_means(z, cluster, cluster_classes.shape[0])
    dist = squared_distances(z, means)  # [N, M]
    own = dist.gather(1, cluster[:, None]).squeeze(1)  # [N]
    variance = own.sum() / (z.shape[0] - 1)
    if validate and not float(variance.detach()) > 0:
        raise ValueError(
            f"the batch variance sigma^2 is {float(variance.detach())}, not > 0 (every embedding equals its "
            "cluster mean, e.g. collapsed features or one example per cluster); the Magnet loss is undefined"
        )
    log_kernel = -dist / (2 * variance)  # [N, M]
    impostor = (cluster_classes[None, :] != y[:, None]) & present[None, :]  # [N, M]
    log_floor = torch.full((z.shape[0], 1), math.log(floor), dtype=z.dtype, device=z.device)
    log_denominator = torch.logsumexp(
        torch.cat([log_kernel.masked_fill(~impostor, float("-inf")), log_floor], dim=1), dim=1
    )
    log_ratio = -own / (2 * variance) - alpha - log_denominator
    per_example = F.relu(-torch.logaddexp(log_ratio, log_floor.squeeze(1)))
    return MagnetTerms(per_example.mean(), per_example, variance, means)


def _check_magnet_inputs(z: torch.Tensor, cluster: torch.Tensor, y: torch.Tensor, floor: float) -> torch.Tensor:
    """Validate the inputs; return the class of every batch cluster ``[M]``."""
    if z.dim() != 2:
        raise ValueError(f"z must be [N, d] embeddings, got shape {tuple(z.shape)}")
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"the Magnet loss needs at least 2 examples (variance over N - 1), got {n}")
    for name, t in (("cluster", cluster), ("y", y)):
        if t.shape != (n,) or t.dtype != torch.int64:
            raise ValueError(f"{name} must be int64 of shape [{n}], got {t.dtype} {tuple(t.shape)}")
    if not floor > 0:
        raise ValueError(f"floor must be > 0 (it keeps the log finite), got {floor}")
    if int(cluster.min()) < 0:
        raise ValueError("cluster ids must be >= 0")
    num_clusters = int(cluster.max()) + 1
    counts = torch.bincount(cluster, minlength=num_clusters)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"cluster ids must be 0..M-1 with every cluster present; empty: {missing}")
    cluster_classes = torch.zeros(num_clusters, dtype=torch.int64, device=y.device)
    cluster_classes[cluster] = y
    if not torch.equal(cluster_classes[cluster], y):
        raise ValueError("all members of a batch cluster must have the same class")
    return cluster_classes


def qtrades_consistency(
    clean_log_scores: torch.Tensor,
    adv_log_scores: torch.Tensor,
    kind: str = "ce",
    detach_clean: bool = False,
) -> torch.Tensor:
    """The ClusTR+QTRADES consistency term between clean and adversarial scores, per example.

    ``"ce"``: ``-sum_c p_c(x) log softmax_c(S(x_adv))`` with ``p = softmax(log S(x))``
    (README.md, "ClusTR+QTRADES").

    Both inputs are *log-domain* class scores ``log S_c`` ``[B, C]`` (what ``ClusterHead``
    returns). The clean distribution is the L1-normalised ``S``, i.e. ``p = softmax(log S)``.

    * ``"ce"`` (official default): ``-sum_c p_c(x) log softmax(S(x_adv))_c`` where the
      adversarial side is a softmax of the *raw* scores ``S = exp(log S)`` in ``[0, K]``, as
      in the official code (a cross-entropy, not a KL, between an L1-normalised and a
      softmax-normalised distribution; kept on purpose, as the README explains).
    * ``"kl"``: ``KL(p(x) || q(x_adv))`` with ``q`` the L1-normalised adversarial scores
      (the TRADES form; a documented alternative, not the paper's).
    * ``"mse"``: not a score-based term; use ``embedding_consistency`` instead.

    Args:
        clean_log_scores: log-domain class scores of the clean batch ``[B, C]``.
        adv_log_scores: log-domain class scores of the adversarial batch ``[B, C]``.
        kind: ``"ce"`` or ``"kl"``.
        detach_clean: stop the gradient through ``p(x)`` (official: ``False``, the clean
            branch receives gradient from this term too).
    Returns:
        ``[B]`` per-example values in nats.

    Example:
        >>> s = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5]]))
        >>> qtrades_consistency(s, s, kind="kl")
        tensor([0., 0.])
    """
    if clean_log_scores.shape != adv_log_scores.shape:
        raise ValueError(
            f"clean and adversarial scores differ in shape: {tuple(clean_log_scores.shape)} "
            f"vs {tuple(adv_log_scores.shape)}"
        )
    clean = at_least_float32(clean_log_scores)
    clean = clean.detach() if detach_clean else clean
    p = clean.softmax(dim=1)
    if kind == "ce":
        log_q = at_least_float32(adv_log_scores).exp().log_softmax(dim=1)
        return -(p * log_q).sum(1)
    if kind == "kl":
        log_q = at_least_float32(adv_log_scores).log_softmax(dim=1)
        return (p * (clean.log_softmax(dim=1) - log_q)).sum(1)
    raise ValueError(f"kind must be 'ce' or 'kl' for a score consistency term, got {kind!r}")


def embedding_consistency(z_clean: torch.Tensor, z_adv: torch.Tensor, detach_clean: bool = False) -> torch.Tensor:
    """The official ``--mse-consistency`` alternative: ``||z - z_adv||^2 / d`` per example.

    Args:
        z_clean: clean embeddings ``[B, d]`` (feature units).
        z_adv: embeddings of the adversarial batch ``[B, d]``.
        detach_clean: stop the gradient through ``z_clean``.
    Returns:
        ``[B]`` mean squared differences (squared feature units).

    Example:
        >>> embedding_consistency(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]))
        tensor([5.])
    """
    if z_clean.shape != z_adv.shape:
        raise ValueError(f"embeddings differ in shape: {tuple(z_clean.shape)} vs {tuple(z_adv.shape)}")
    z_clean = z_clean.detach() if detach_clean else z_clean
    return (at_least_float32(z_clean) - at_least_float32(z_adv)).pow(2).mean(1)
