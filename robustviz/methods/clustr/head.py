"""ClusTR's decision rule: the soft top-L nearest-cluster classifier, installed as the model's head.

Paper: Alfarra et al. 2020, ClusTR, https://arxiv.org/abs/2006.07682 (README.md in this
folder, "Decision rule: the soft top-L vote").

``ClusterHead.forward`` returns *log-domain* class scores, not the paper's exp-domain scores,
whose gradients vanish a few cluster widths away from a centre (README.md, "Exp-domain scores
mask the gradient"); ``PaperScores`` wraps a model to give the paper's normalised scores.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..._precision import at_least_float32
from ...geometry import CentreRule


class ClusterHead(nn.Module):
    """ClusTR's soft top-L nearest-cluster classifier: log-domain class scores ``[B, C]``.

    Buffers (saved with the model): ``centres [C*K, d]``, ``centre_labels [C*K]`` and the
    global ``variance`` sigma^2 (scalar, squared feature units).

    With ``log k_j(z) = -||z - mu_j||^2 / (2 sigma^2)`` and ``T(z)`` the ``top_l`` centres of
    largest ``k_j`` (the L nearest):

    * ``forward(z)`` = ``log S_c(z) = logsumexp_{j in T(z), class(j)=c} log k_j(z)``, i.e. the
      log of the paper's class score ``S_c``, computed without ever exponentiating (no
      underflow: README.md, "Every score underflows to zero"). Softmax of it is the paper's
      L1-normalised distribution.
      A class with no centre in ``T(z)`` has ``S_c = 0``; it gets the finite score
      ``min_{j in T(z)} log k_j(z) - absent_gap`` [robustviz choice]: below every present
      class (each present class has a centre scoring at least the L-th value), so argmax is
      the paper's, and never ``-inf``/NaN.
    * ``class_scores(z)``: the paper's raw ``S_c`` in ``[0, K]`` (may underflow to 0; warns).
    * ``paper_scores(z)``: ``S_c / sum_c S_c``, what the official evaluation attacks.
    * ``nearest_class(z)``: the hard nearest-centre rule, which the certificate covers
      (README.md, "Certificate for the hard nearest-centre rule").

    Args:
        feat_dim: d, the feature dimension.
        num_classes: C.
        clusters_per_class: K, centres per class.
        top_l: L, the number of nearest centres that vote (the official evaluation: 20;
            values ``>= C*K`` use all centres).
        absent_gap: nats below the L-th nearest centre's log-kernel given to absent classes.

    Example:
        >>> head = ClusterHead(feat_dim=2, num_classes=2, clusters_per_class=1, top_l=2)
        >>> head.set_clusters(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), torch.tensor([0, 1]), 1.0)
        >>> head(torch.tensor([[1.0, 0.0]])).argmax(1).tolist()
        [0]
    """

    def __init__(self, feat_dim: int, num_classes: int, clusters_per_class: int = 2, top_l: int = 20,
                 absent_gap: float = 50.0) -> None:
        super().__init__()
        if top_l < 1:
            raise ValueError(f"top_l must be >= 1, got {top_l}")
        if not absent_gap > 0:
            raise ValueError(f"absent_gap must be > 0, got {absent_gap}")
        self.num_classes, self.clusters_per_class = num_classes, clusters_per_class
        self.top_l, self.absent_gap = top_l, absent_gap
        total = num_classes * clusters_per_class
        self.register_buffer("centres", torch.zeros(total, feat_dim))
        self.register_buffer("centre_labels", torch.arange(num_classes).repeat_interleave(clusters_per_class))
        self.register_buffer("variance", torch.tensor(1.0))

    @torch.no_grad()
    def set_clusters(self, centres: torch.Tensor, centre_labels: torch.Tensor, variance: float) -> None:
        """Install new centres ``[C*K, d]``, their labels ``[C*K]`` and sigma^2 (> 0)."""
        if centres.shape != self.centres.shape or centre_labels.shape != self.centre_labels.shape:
            raise ValueError(
                f"expected centres {tuple(self.centres.shape)} and labels {tuple(self.centre_labels.shape)}, "
                f"got {tuple(centres.shape)} and {tuple(centre_labels.shape)}"
            )
        if not float(variance) > 0:
            raise ValueError(f"variance must be > 0, got {float(variance)}")
        self.centres.copy_(centres)
        self.centre_labels.copy_(centre_labels)
        self.variance.fill_(float(variance))

    def log_kernel(self, z: torch.Tensor) -> torch.Tensor:
        """``-||z - mu_j||^2 / (2 sigma^2)`` for every centre, ``[B, C*K]`` (float32 or float64)."""
        if z.dim() != 2 or z.shape[1] != self.centres.shape[1]:
            raise ValueError(f"expected features [B, {self.centres.shape[1]}], got {tuple(z.shape)}")
        z = at_least_float32(z)
        centres = self.centres.to(z.dtype)
        return -(z[:, None, :] - centres[None]).pow(2).sum(-1) / (2 * self.variance.to(z.dtype))

    def _top_l(self, z: torch.Tensor, top_l: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-class logsumexp over the selected centres ``[B, C]``, which classes are present
        ``[B, C]``, and the smallest selected log-kernel ``[B]``."""
        log_k = self.log_kernel(z)
        count = min(top_l or log_k.shape[1], log_k.shape[1])
        values, which = log_k.topk(count, dim=1)  # sorted, largest first
        classes = torch.arange(self.num_classes, device=z.device)
        member = self.centre_labels[which][:, :, None] == classes  # [B, L, C]
        present = member.any(dim=1)
        masked = torch.where(member, values[:, :, None], float("-inf"))
        # Absent columns would be all -inf (NaN gradients); fill them with zeros first.
        masked = torch.where(present[:, None, :], masked, torch.zeros_like(masked))
        return torch.logsumexp(masked, dim=1), present, values[:, -1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Log-domain class scores ``[B, C]`` (finite, higher = more likely)."""
        class_log, present, lowest = self._top_l(z, self.top_l)
        return torch.where(present, class_log, (lowest - self.absent_gap)[:, None])

    def class_scores(self, z: torch.Tensor, all_centres: bool = False) -> torch.Tensor:
        """The paper's raw class scores ``S_c = sum_{j in T(z), class c} k_j(z)`` ``[B, C]``.

        Args:
            z: features ``[B, d]``.
            all_centres: every centre votes (the official ``--not-normalize`` flag).
        Returns:
            ``[B, C]`` scores in ``[0, K]``.

        Warns (``RuntimeWarning``) when every score of a row underflows to 0 (README.md,
        "Every score underflows to zero").
        """
        class_log, present, _ = self._top_l(z, None if all_centres else self.top_l)
        scores = torch.where(present, class_log.exp(), torch.zeros_like(class_log))
        underflow = int((scores.sum(1) == 0).sum())
        if underflow:
            warnings.warn(
                f"{underflow} of {scores.shape[0]} inputs have every exp-domain ClusTR score equal to 0 "
                "(they lie far from all centres); their argmax falls back to class 0 and their gradient "
                "vanishes. Use the log-domain scores (forward) for attacks.",
                RuntimeWarning, stacklevel=2,
            )
        return scores

    def paper_scores(self, z: torch.Tensor, all_centres: bool = False) -> torch.Tensor:
        """L1-normalised ``S_c / sum_c S_c`` ``[B, C]``, as the official code reports and attacks.

        Rows whose scores all underflow stay all-zero (argmax: class 0), as in the official
        code; ``class_scores`` warns about them.
        """
        scores = self.class_scores(z, all_centres)
        return scores / scores.sum(1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)

    def nearest_class(self, z: torch.Tensor) -> torch.Tensor:
        """The hard nearest-centre prediction ``class(argmin_j ||z - mu_j||)`` ``[B]``."""
        return self.centre_rule().predict(z)

    def centre_rule(self) -> CentreRule:
        """The hard nearest-centre rule on the raw features (``robustviz.geometry``), the rule the
        certificate covers; ``forward``'s soft top-L vote agrees with it wherever the nearest
        centre's class also wins the vote."""
        return CentreRule(self.centres.detach(), self.centre_labels.detach(), "features")

    def extra_repr(self) -> str:
        return (f"classes={self.num_classes}, clusters_per_class={self.clusters_per_class}, "
                f"top_l={self.top_l}, absent_gap={self.absent_gap}")


class PaperScores(nn.Module):
    """A view of a ClusTR model whose ``forward`` gives the paper's normalised scores.

    ``PaperScores(model)(x) = model.head.paper_scores(model.features(x))``, ``[B, C]``.
    Attacking it with PGD-CE reproduces the official evaluation (README.md, "What the papers
    report and what robustviz measures"), i.e. a demonstration of gradient masking; compare
    with attacks on ``model`` itself (log-domain scores).

    Args:
        model: a model whose head is a ``ClusterHead`` (trained with ``clustr``).
        all_centres: every centre votes (the official ``--not-normalize`` flag).

    Example:
        >>> x_adv = pgd(PaperScores(model), x, y, eps=0.1, steps=20)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, all_centres: bool = False) -> None:
        super().__init__()
        if not isinstance(getattr(model, "head", None), ClusterHead):
            raise ValueError("PaperScores needs a model whose head is a ClusterHead (train it with ClusTR)")
        self.model, self.all_centres = model, all_centres
        self.num_classes = model.head.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head.paper_scores(self.model.features(x), self.all_centres)


def score_gradient_norms(head: ClusterHead, widths, label: int = 0, seed: int = 0) -> dict[str, list[float]]:
    """Norms of the cross-entropy gradient far from the centres, for exp- and log-domain scores.

    Why the paper's evaluation stalls (README.md, "Exp-domain scores mask the gradient").

    A feature vector is moved from the first centre of class ``label`` along a random unit
    direction to squared distance ``d^2 = 2 sigma^2 w`` for each ``w`` in ``widths`` (the
    distance "in cluster widths", the exponent of the kernel). At each point, the norm of the
    gradient of cross-entropy with respect to the features is measured for the paper's
    normalised exp-domain scores and for robustviz's log-domain scores. Past ``w ~ 87`` every
    float32 kernel underflows to 0 and the exp-domain gradient is exactly 0.

    Args:
        head: a fitted ``ClusterHead``.
        widths: the distances ``w`` to probe, in cluster widths (``d^2 = 2 sigma^2 w``).
        label: the class whose first centre is the starting point.
        seed: seed of the random direction.

    Returns:
        ``{"paper scores (exp domain)": [norm per width], "log-domain scores": [...]}``.

    Example:
        >>> norms = score_gradient_norms(model.head, [1, 32, 100])  # doctest: +SKIP
    """
    centre = head.centres[head.centre_labels == label][0]
    generator = torch.Generator().manual_seed(seed)
    direction = nn.functional.normalize(torch.randn(centre.shape, generator=generator), dim=0).to(centre)
    target = torch.tensor([label], device=centre.device)
    norms: dict[str, list[float]] = {"paper scores (exp domain)": [], "log-domain scores": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the underflow is what is being shown
        for width in widths:
            z = (centre + direction * (2 * head.variance * float(width)).sqrt())[None].requires_grad_()
            for name, scores in zip(norms, (head.paper_scores(z), head(z))):
                loss = nn.functional.cross_entropy(scores, target)
                norms[name].append(float(torch.autograd.grad(loss, z)[0].norm()))
    return norms


