"""ADR's regularisers on the features: local and global compactness, entropy, consistency, smoothness.

Paper: Bui et al. 2020, "Improving Adversarial Robustness by Enforcing Local and Global
Compactness", https://arxiv.org/abs/2007.05123; computed as the authors' code computes them
(README.md in this folder, "The formulas").

Notation: ``z = model.features(x)`` ``[b, k]`` on the clean batch, ``z_adv`` on its adversarial
examples; ``p = softmax(logits)``; ``sg`` = stop-gradient (``.detach()``). Every distance is
the *mean* absolute difference over the ``k`` feature dimensions, ``d(u, v) = ||u - v||_1 / k``,
so the weights do not rescale with the width of the layer (README.md, "Mean, not sum, over
feature dimensions").

    L_lc  = 1/b   sum_i      d(sg z_i, z_adv_i)                          local compactness
    L_gc  = 1/b^2 sum_ij w_ij d(sg z_j, z_adv_i)                          global compactness
    L_ent = 1/b   sum_i      H(p(x_adv_i))                                entropy
    L_vat = 1/b   sum_i      CE(sg p(x_i), logits(x_adv_i))               consistency
    L_gs  = 1/b^2 sum_ij w_ij CE(sg p(x_j), logits(x_adv_i))             global smoothness

The stop-gradients are part of the method (README.md, "Stop-gradients are part of the
method"): clean ``z`` is a fixed target
in L_lc and L_gc, the clean prediction is a fixed target in L_vat and L_gs, and ``p(x_adv)``
is *not* detached in L_ent (true entropy minimisation). ``detach_clean=False`` in L_lc/L_gc is
a robustviz option, not the method (see ``ADRRegularizer``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..._precision import at_least_float32
from ...geometry import check_logit_pair

DEFAULT_SCALE = 0.99


def _flat_pair(z_clean: torch.Tensor, z_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two feature batches match and return them as ``[b, k]`` in at least float32."""
    if z_clean.shape != z_adv.shape or z_clean.dim() < 2:
        raise ValueError(
            "expected clean and adversarial features of the same shape [b, k], got "
            f"{tuple(z_clean.shape)} and {tuple(z_adv.shape)}"
        )
    return at_least_float32(z_clean.flatten(1)), at_least_float32(z_adv.flatten(1))


def _check_labels(y: torch.Tensor, batch: int) -> None:
    if y.dim() != 1 or y.shape[0] != batch:
        raise ValueError(f"expected labels of shape [{batch}], got {tuple(y.shape)}")


def label_weights(y: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Pair weights ``w[i, j]`` of L_gc and L_gs: 1 for a same-class pair and
    ``1 - 1/scale`` (= -1/99 at 0.99, a weak repulsion) for a different-class pair.

    ``w_ij = (scale - 1[y_i != y_j]) / scale``. The official code normalises
    ``||onehot(y_i) - onehot(y_j)||_1`` by its batch maximum, which is 0/0 = NaN when the
    batch has one class (README.md, "NaN label weights"); the indicator
    ``1[y_i != y_j]`` used here is the same value whenever the code's is defined, needs no
    number of classes, and is finite for every batch.

    Args:
        y: labels ``[b]``; row ``i`` is the adversarial sample, column ``j`` the clean one
            (the labels are shared, so ``w`` is symmetric).
        scale: ``s`` in ``w = (s - delta) / s``; the code hard-codes 0.99 and asserts
            ``>= 0.9``. Must be in (0, 1]; 1 switches the repulsion off.

    Returns:
        ``[b, b]`` float32 weights, diagonal 1 (no gradient).

    Example:
        >>> label_weights(torch.tensor([0, 0, 1]), scale=0.5)
        tensor([[ 1.,  1., -1.],
                [ 1.,  1., -1.],
                [-1., -1.,  1.]])
    """
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if y.dim() != 1:
        raise ValueError(f"expected labels of shape [b], got {tuple(y.shape)}")
    different = (y[:, None] != y[None, :]).float()
    return (scale - different) / scale


def local_compactness(z_clean: torch.Tensor, z_adv: torch.Tensor, detach_clean: bool = True) -> torch.Tensor:
    """Local compactness L_lc: ``1/b sum_i ||sg(z_i) - z_adv_i||_1 / k``, a scalar.

    Args:
        z_clean: clean features ``[b, k]`` (a fixed target: detached).
        z_adv: features of the adversarial examples ``[b, k]``.
        detach_clean: ``True`` is the method; ``False`` lets the gradient move the clean
            features too [robustviz option, see ``ADRRegularizer``].

    Returns:
        scalar ``>= 0``, in the units of the features; 0 when ``z_adv == z_clean``.

    Example:
        >>> local_compactness(torch.zeros(2, 4), torch.ones(2, 4))
        tensor(1.)
    """
    z_clean, z_adv = _flat_pair(z_clean, z_adv)
    target = z_clean.detach() if detach_clean else z_clean
    return (target - z_adv).abs().mean()


def pairwise_distances(z_clean: torch.Tensor, z_adv: torch.Tensor, detach_clean: bool = True) -> torch.Tensor:
    """Mean absolute distance of every (adversarial ``i``, clean ``j``) pair, ``[b, b]``.

    ``D[i, j] = ||sg(z_clean_j) - z_adv_i||_1 / k``.

    Uses ``torch.cdist`` (memory ``O(b^2)``; a broadcast ``[b, b, k]`` tensor would be
    ``O(b^2 k)``: README.md, "Memory").

    Args:
        z_clean: clean features ``[b, k]``.
        z_adv: adversarial features ``[b, k]``.
        detach_clean: see ``local_compactness``.
    Returns:
        ``[b, b]`` float32 distances (gradient only to ``z_adv`` unless ``detach_clean=False``).

    Example:
        >>> pairwise_distances(torch.tensor([[0.0, 0.0], [2.0, 2.0]]), torch.zeros(2, 2))
        tensor([[0., 2.],
                [0., 2.]])
    """
    z_clean, z_adv = _flat_pair(z_clean, z_adv)
    target = z_clean.detach() if detach_clean else z_clean
    return torch.cdist(z_adv, target, p=1) / z_adv.shape[1]


def global_compactness(
    z_clean: torch.Tensor, z_adv: torch.Tensor, y: torch.Tensor, scale: float = DEFAULT_SCALE,
    detach_clean: bool = True,
) -> torch.Tensor:
    """Global compactness L_gc: ``1/b^2 sum_ij w_ij D_ij`` over all (adversarial i, clean j) pairs.

    Pulls each adversarial feature toward every same-class clean feature of the batch,
    its own included (README.md, "The diagonal of $L_{gc}$ is kept"), and pushes it very
    weakly away from the other classes. The repulsion is unbounded, so L_gc can go negative
    (README.md, "Unbounded repulsion").

    Args:
        z_clean: clean features ``[b, k]``.
        z_adv: adversarial features ``[b, k]``.
        y: labels ``[b]``.
        scale: see ``label_weights``.
        detach_clean: see ``local_compactness``.

    Returns:
        scalar (can be negative); for ``b = 1`` it equals ``local_compactness``.

    Example:
        >>> global_compactness(torch.zeros(1, 3), torch.ones(1, 3), torch.tensor([0]))
        tensor(1.)
    """
    distances = pairwise_distances(z_clean, z_adv, detach_clean)
    _check_labels(y, distances.shape[0])
    return (label_weights(y, scale) * distances).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of ``softmax(logits)`` per sample, ``-sum_c p_c log p_c``.

    Args:
        logits: ``[b, K]``.
    Returns:
        ``[b]`` entropies in ``[0, log K]`` nats.

    Example:
        >>> entropy(torch.zeros(1, 4))
        tensor([1.3863])
    """
    log_p = F.log_softmax(at_least_float32(logits), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def conditional_entropy(adv_logits: torch.Tensor) -> torch.Tensor:
    """Entropy term L_ent: ``1/b sum_i H(p(x_adv_i))``, the mean entropy of the adversarial predictions.

    Not detached: the gradient is the full entropy gradient.

    Args:
        adv_logits: logits of the adversarial batch ``[b, K]``.
    Returns:
        a scalar in ``[0, log K]`` nats.

    Example:
        >>> conditional_entropy(torch.zeros(2, 4))
        tensor(1.3863)
    """
    if adv_logits.dim() != 2:
        raise ValueError(f"expected logits of shape [b, K], got {tuple(adv_logits.shape)}")
    return entropy(adv_logits).mean()


def soft_cross_entropy(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a soft, detached target: ``CE(sg softmax(target_logits), logits)`` per sample.

    Args:
        target_logits: logits of the target distribution ``[b, K]`` (no gradient reaches them).
        logits: ``[b, K]``.
    Returns:
        ``[b]`` values in nats.

    Example:
        >>> soft_cross_entropy(torch.zeros(1, 4), torch.zeros(1, 4))
        tensor([1.3863])
    """
    target = F.softmax(at_least_float32(target_logits.detach()), dim=1)
    return -(target * F.log_softmax(at_least_float32(logits), dim=1)).sum(dim=1)


def vat_consistency(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """Consistency term L_vat: ``1/b sum_i CE(sg p(x_i), logits(x_adv_i))``, in nats.

    Equals ``mean_i KL(p(x_i) || p(x_adv_i)) + H(p(x_i))``: its gradient is the KL's with the
    clean side frozen, and its *value* never falls below the mean clean entropy (README.md,
    "Reported $L_{vat}$ never reaches 0"). No gradient reaches ``clean_logits``; w.r.t.
    ``adv_logits`` it is ``(q - p) / b``.

    Args:
        clean_logits: logits of the clean batch ``[b, K]``.
        adv_logits: logits of the adversarial batch ``[b, K]``.
    Returns:
        a scalar ``>= 0``.

    Example:
        >>> vat_consistency(torch.zeros(2, 4), torch.zeros(2, 4))
        tensor(1.3863)
    """
    check_logit_pair(clean_logits, adv_logits)
    return soft_cross_entropy(clean_logits, adv_logits).mean()


def pairwise_soft_cross_entropy(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy of every (adversarial ``i``, clean ``j``) pair: ``C[i, j] = CE(sg p(x_j), logits(x_adv_i))``.

    Args:
        clean_logits: ``[b, K]`` (no gradient reaches them).
        adv_logits: ``[b, K]``.
    Returns:
        ``[b, b]`` values in nats.

    Example:
        >>> pairwise_soft_cross_entropy(torch.zeros(2, 4), torch.zeros(2, 4)).shape
        torch.Size([2, 2])
    """
    check_logit_pair(clean_logits, adv_logits)
    target = F.softmax(clean_logits.detach().float(), dim=1)  # p(x_j): [b, K]
    log_q = F.log_softmax(adv_logits.float(), dim=1)  # log p(x_adv_i): [b, K]
    # A broadcast [b, b, K] product rather than a matmul, which autocast would run in bf16.
    return -(log_q[:, None, :] * target[None, :, :]).sum(dim=2)


def global_smoothness(
    clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor,
    scale: float = DEFAULT_SCALE,
) -> torch.Tensor:
    """Global smoothness L_gs: ``1/b^2 sum_ij w_ij CE(sg p(x_j), logits(x_adv_i))``, a scalar in nats.

    Experimental in the authors' code ("just for further investigation"); weight 0 by default.

    Args:
        clean_logits: ``[b, K]``. adv_logits: ``[b, K]``. y: labels ``[b]``.
        scale: see ``label_weights``.
    Returns:
        a scalar in nats (can be negative).

    Example:
        >>> global_smoothness(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([0, 0]))
        tensor(1.3863)
    """
    cross = pairwise_soft_cross_entropy(clean_logits, adv_logits)
    _check_labels(y, cross.shape[0])
    return (label_weights(y, scale) * cross).mean()


class ADRTerms(NamedTuple):
    """The five ADR regularisers of one batch (scalars, unweighted)."""

    lc: torch.Tensor
    gc: torch.Tensor
    ent: torch.Tensor
    vat: torch.Tensor
    gs: torch.Tensor


def adr_terms(
    z_clean: torch.Tensor, z_adv: torch.Tensor, clean_logits: torch.Tensor, adv_logits: torch.Tensor,
    y: torch.Tensor, scale: float = DEFAULT_SCALE, detach_clean: bool = True,
) -> ADRTerms:
    """All five ADR regularisers of one batch, unweighted.

    Args:
        z_clean, z_adv: clean and adversarial features ``[b, k]``.
        clean_logits, adv_logits: clean and adversarial logits ``[b, K]``.
        y: labels ``[b]``.
        scale: see ``label_weights``.
        detach_clean: see ``local_compactness``.
    Returns:
        ``ADRTerms(lc, gc, ent, vat, gs)``, scalars.

    Example:
        >>> adr_terms(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 4),
        ...           torch.tensor([0, 1])).lc
        tensor(0.)
    """
    return ADRTerms(
        lc=local_compactness(z_clean, z_adv, detach_clean),
        gc=global_compactness(z_clean, z_adv, y, scale, detach_clean),
        ent=conditional_entropy(adv_logits),
        vat=vat_consistency(clean_logits, adv_logits),
        gs=global_smoothness(clean_logits, adv_logits, y, scale),
    )


class ADRRegularizer(nn.Module):
    """The weighted sum of the five ADR regularisers, with every term for logging.

    ``lambda_lc L_lc + lambda_gc L_gc + lambda_ent L_ent + lambda_vat L_vat + lambda_gs L_gs``.
    Defaults are the code's ADR weights 1, 1, 1, 1, 0 and ``scale`` 0.99.

    ``forward(z_clean, z_adv, clean_logits, adv_logits, y)`` returns ``(total, terms)``:
    ``terms`` holds every regulariser (computed even when its weight is 0, for logging) and
    ``total`` adds only the terms with a non-zero weight, so with all weights 0 it is an exact
    float32 zero and ``base + total == base`` bit for bit.

    ``detach_clean=False`` [robustviz option, not the authors' method] lets L_lc and L_gc move
    the clean features as well: with the method's fixed (detached) clean target the features
    of BatchNorm-free networks (``smallcnn``, ``mlp``) can grow without bound (README.md,
    "Feature blow-up without BatchNorm").

    Args:
        lambda_lc, lambda_gc, lambda_ent, lambda_vat, lambda_gs: the weights (no unit).
        scale: see ``label_weights``.
        detach_clean: see ``local_compactness``.

    Example:
        >>> total, terms = ADRRegularizer()(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4),
        ...                                 torch.zeros(2, 4), torch.tensor([0, 1]))
        >>> sorted(terms._asdict())
        ['ent', 'gc', 'gs', 'lc', 'vat']
    """

    def __init__(
        self, lambda_lc: float = 1.0, lambda_gc: float = 1.0, lambda_ent: float = 1.0,
        lambda_vat: float = 1.0, lambda_gs: float = 0.0, scale: float = DEFAULT_SCALE,
        detach_clean: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        self.weights = {"lc": float(lambda_lc), "gc": float(lambda_gc), "ent": float(lambda_ent),
                        "vat": float(lambda_vat), "gs": float(lambda_gs)}
        self.scale = scale
        self.detach_clean = detach_clean

    def forward(
        self, z_clean: torch.Tensor, z_adv: torch.Tensor, clean_logits: torch.Tensor,
        adv_logits: torch.Tensor, y: torch.Tensor,
    ) -> tuple[torch.Tensor, ADRTerms]:
        terms = adr_terms(z_clean, z_adv, clean_logits, adv_logits, y, self.scale, self.detach_clean)
        total = torch.zeros((), dtype=torch.float32, device=adv_logits.device)
        for name, value in terms._asdict().items():
            if self.weights[name] != 0:
                total = total + self.weights[name] * value
        return total, terms

    def extra_repr(self) -> str:
        weights = ", ".join(f"lambda_{name}={w:g}" for name, w in self.weights.items())
        return f"{weights}, scale={self.scale}, detach_clean={self.detach_clean}"
