"""ClusTR and ClusTR+QTRADES: Magnet-loss training, a per-epoch k-means index, a nearest-cluster head.

Paper: Alfarra et al. 2020, ClusTR, https://arxiv.org/abs/2006.07682. Formulas, settings and
pitfalls: README.md in this folder.

A network's embedding is trained with the Magnet loss on neighbourhood batches (README.md,
"Magnet loss (training objective)", "Neighbourhood sampling"); K k-means centres per class,
refreshed every epoch, form a soft nearest-cluster classifier ("Decision rule: the soft top-L
vote"). ClusTR+QTRADES adds a one-step consistency term between clean and adversarial class
distributions ("ClusTR+QTRADES").

The decision rule is installed as the model's head (``ClusterHead``), so ``model(x)`` and
every attack use it. ``forward`` returns *log-domain* class scores, not the paper's
exp-domain scores, whose gradients vanish a few cluster widths away from a centre (README.md,
"Exp-domain scores mask the gradient"); ``PaperScores`` wraps a model to give the paper's
normalised scores for a faithful reproduction of its (gradient-masked) evaluation.

Independent evaluation found the published model not robust (README.md, "Read this first"):
teach this method as a feature-geometry and gradient-masking case study, not as a defence.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..._precision import at_least_float32
from ...attacks import pgd
from ...attacks.core import crafting_batchnorm
from ...data import BatchIterator, Split, crop_flip, crop_flip_draws
from ...models import features_of
from ..base import FIRST_STEP, Batch, Method, Step, StepOutput
from .head import ClusterHead
from .loss import (
    CONSISTENCY_KINDS,
    MagnetTerms,
    embedding_consistency,
    magnet_loss,
    qtrades_consistency,
)
from .sampler import (
    ClusterIndex,
    build_cluster_index,
    nearest_same_class_centre,
    neighbourhood_batch,
)

# ---- training --------------------------------------------------------------------------------


class ClusTR(Method):
    """ClusTR: the Magnet loss on neighbourhood batches, with a per-epoch k-means refresh of the head.

    ``L = mean_n l_n`` (``magnet_loss``) on a batch of M clusters of D examples each.

    Per step (README.md, "Neighbourhood sampling"): a seed cluster is drawn in proportion to its mean observed
    example loss, the ``M - 1`` nearest other-class centres join it, ``D`` examples are drawn
    from each; the loss is the minibatch Magnet loss of their embeddings, and the per-example
    losses are written back for the next draws. After every epoch (and in ``setup``, before
    the first) the index is rebuilt by per-class k-means on the embeddings of the
    *un-augmented* training images in *eval* mode (README.md, "Index built from augmented,
    train-mode features"), and the head gets the new centres and the global sigma^2.

    ``fit`` draws ``len(loader)`` batches per epoch; set the config's ``batch_size`` to ``M * D``
    so an epoch is ``N / (M * D)`` batches, as in the official code (README.md, "An epoch is
    not a pass over the data"). The training
    accuracy ``fit`` logs scores each batch with the centres of the last refresh, so it lags
    behind the network within an epoch (the held-out accuracy is measured after the refresh).

    Init: the paper starts from a cross-entropy pre-trained network whose weights are not
    available (README.md, "Missing pre-trained weights"). ``pretrain_epochs > 0`` warm-starts
    the network instead: the first ``pretrain_epochs`` epochs of the run train ``features``
    with cross-entropy through a linear classifier the method owns (ordinary shuffled batches;
    the cluster head is refreshed after every epoch but not trained), the Magnet loss takes
    over from the next epoch on.
    The full profiles do this; the quick profile trains from scratch (see ``RECIPES``). A
    network trained by another recipe can also be ``fit`` with ``clustr`` (``attach`` replaces
    only the head).

    Args:
        eps: unused by ClusTR (accepted so every recipe is built the same way).
        clusters_per_class: K, centres per class (2).
        clusters_per_batch: M, clusters per batch (12); fewer when fewer non-empty
            other-class clusters exist.
        examples_per_cluster: D, examples drawn per cluster (20).
        alpha: the Magnet margin in nats of ``||r - mu||^2 / (2 sigma^2)`` (12.5).
        magnet_eps: the numerical floor of the Magnet loss, the official ``1e-8`` inside and
            outside the log (``floor`` of ``magnet_loss``; the name is kept for stored configs).
        top_l: L nearest centres voting at test time (the official evaluation: 20).
        absent_gap: log-score gap of classes without a centre in the top L (``ClusterHead``).
        kmeans_n_init, kmeans_max_iter, kmeans_seed: k-means settings (CIFAR-10: 1, 20, 1).
        embed_batch_size: batch size when embedding the training set for the index.
        pretrain_epochs: epochs of cross-entropy warm start at the beginning of the run
            (counted in the run's ``epochs``); 0 = Magnet loss from the first step.

    Logged terms: ``magnet`` and ``sigma2`` (the batch's variance); ``pretrain_ce`` during the
    warm start.

    Example:
        >>> from robustviz.methods.clustr import RECIPES
        >>> history = fit(model, bundle, RECIPES[0], epochs=2)  # doctest: +SKIP
    """

    key = "clustr"

    def __init__(
        self,
        eps: float | None = None,
        clusters_per_class: int = 2,
        clusters_per_batch: int = 12,
        examples_per_cluster: int = 20,
        alpha: float = 12.5,
        magnet_eps: float = 1e-8,
        top_l: int = 20,
        absent_gap: float = 50.0,
        kmeans_n_init: int = 1,
        kmeans_max_iter: int = 20,
        kmeans_seed: int = 1,
        embed_batch_size: int = 500,
        pretrain_epochs: int = 0,
    ) -> None:
        super().__init__()
        if int(pretrain_epochs) != pretrain_epochs or pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs must be an integer >= 0, got {pretrain_epochs}")
        if clusters_per_class < 1:
            raise ValueError(f"clusters_per_class must be >= 1, got {clusters_per_class}")
        if clusters_per_batch < 2 or examples_per_cluster < 1:
            raise ValueError("clusters_per_batch must be >= 2 and examples_per_cluster >= 1, got "
                             f"{clusters_per_batch} and {examples_per_cluster}")
        if not magnet_eps > 0:
            raise ValueError(f"magnet_eps must be > 0, got {magnet_eps}")
        self.eps = eps
        self.clusters_per_class, self.clusters_per_batch = clusters_per_class, clusters_per_batch
        self.examples_per_cluster = examples_per_cluster
        self.alpha, self.magnet_eps = alpha, magnet_eps
        self.top_l, self.absent_gap = top_l, absent_gap
        self.kmeans = dict(n_init=kmeans_n_init, max_iter=kmeans_max_iter, seed=kmeans_seed)
        self.embed_batch_size = embed_batch_size
        self.pretrain_epochs = int(pretrain_epochs)
        self.index: ClusterIndex | None = None
        self.example_losses: torch.Tensor | None = None  # [N], NaN = not observed yet
        self.pretrain_head: nn.Linear | None = None  # the warm start's linear classifier

    # -- structure and index --

    def attach(self, model: nn.Module) -> None:
        """Replace ``model.head`` by a ``ClusterHead`` (zero centres until ``setup``)."""
        for name in ("features", "feat_dim", "num_classes"):
            if not hasattr(model, name):
                raise TypeError(f"ClusTR needs a RobustModel (with .{name}); got {type(model).__name__}")
        device = next(model.parameters()).device
        model.head = ClusterHead(model.feat_dim, model.num_classes, self.clusters_per_class, self.top_l,
                                 self.absent_gap).to(device)
        if self.pretrain_epochs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.kmeans["seed"])  # the same classifier init on every attach
                self.pretrain_head = nn.Linear(model.feat_dim, model.num_classes).to(device)

    def setup(self, model: nn.Module, train: Split) -> None:
        """Build the initial index from the current network (README.md, "Cluster index and its
        refresh"); no loss observed yet."""
        self.refresh_index(model, train)
        self.example_losses = torch.full((len(train),), float("nan"))

    def on_epoch_end(self, model: nn.Module, train: Split, epoch: int) -> None:
        """Rebuild the index and the head's centres and sigma^2 (the per-epoch refresh)."""
        self.refresh_index(model, train)

    def refresh_index(self, model: nn.Module, train: Split) -> ClusterIndex:
        """k-means on the eval-mode embeddings of ``train.x``; installs the result in the head."""
        head = getattr(model, "head", None)
        if not isinstance(head, ClusterHead):
            raise ValueError("the model has no ClusterHead; call method.attach(model) first")
        z = features_of(model, train.x, self.embed_batch_size)
        self.index = build_cluster_index(z, train.y, model.num_classes, self.clusters_per_class, **self.kmeans)
        head.set_clusters(self.index.centres.to(head.centres.device),
                          self.index.centre_labels.to(head.centres.device), self.index.variance)
        return self.index

    # -- batches --

    def pretraining(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) belongs to the cross-entropy warm start."""
        return epoch < self.pretrain_epochs

    def batches(self, loader: BatchIterator, epoch: int) -> Iterator[Batch]:
        """``len(loader)`` neighbourhood batches, augmented like the loader's batches.

        Each ``Batch`` carries its training-split ``index`` and its batch-cluster ``groups``.
        Warm-start epochs get the loader's ordinary shuffled batches.
        """
        if self.pretraining(epoch):
            yield from super().batches(loader, epoch)
            return
        if self.index is None or self.example_losses is None:
            raise RuntimeError("ClusTR.batches needs the cluster index: call setup(model, train) first")
        if loader.y.shape[0] != self.index.assignments.shape[0]:
            raise ValueError(f"the loader has {loader.y.shape[0]} examples but the index was built on "
                             f"{self.index.assignments.shape[0]}")
        for _ in range(len(loader)):
            indices, groups = neighbourhood_batch(self.index, self.example_losses, self.clusters_per_batch,
                                                  self.examples_per_cluster)
            mine = loader.part(indices.shape[0])  # under torchrun: this rank's samples of every cluster
            where = indices[mine].to(loader.device)
            x, y = loader.x[where], loader.y[where]
            if loader.augment:  # drawn for the whole batch, so every rank's global RNG stays in step
                offsets, flips = crop_flip_draws(indices.shape[0], loader.pad, None)
                x = crop_flip(x, loader.pad, offsets[:, mine], flips[mine])
            yield Batch(x, y, index=indices[mine], groups=groups[mine].to(loader.device))

    def batch_groups(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The batch cluster ``[B]`` of every example: the sampler's ``groups`` when the batch
        has them, else each example's nearest same-class centre of the current index (its
        class when there is no index yet)."""
        if batch.groups is not None:
            return batch.groups.to(batch.y.device)
        if self.index is None:
            keys = batch.y
        else:
            keys, _ = nearest_same_class_centre(z.detach().float().cpu(), batch.y.cpu(), self.index.centres,
                                                self.clusters_per_class)
        return torch.unique(keys.to(batch.y.device), return_inverse=True)[1]

    # -- loss --

    def magnet_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, MagnetTerms]:
        """Embeddings ``[B, d]``, log-domain scores ``[B, C]`` and Magnet terms of a clean batch."""
        z = model.features(batch.x)
        # The sampler's groups are valid by construction: no checks that would wait for the device.
        terms = magnet_loss(z, self.batch_groups(z, batch), batch.y, self.alpha, self.magnet_eps,
                            validate=batch.groups is None)
        return z, model.head(z), terms

    def pretrain_loss(self, model: nn.Module, batch: Batch) -> StepOutput:
        """The warm start: cross-entropy of the method's linear classifier on ``features``."""
        if self.pretrain_head is None:
            raise RuntimeError("the warm start needs the linear classifier: call attach(model) first (fit does)")
        scores = self.pretrain_head(model.features(batch.x))
        loss = F.cross_entropy(at_least_float32(scores), batch.y)
        return StepOutput(loss, scores, {"pretrain_ce": loss.detach()})

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        if self.pretraining(step.epoch):
            return self.pretrain_loss(model, batch)
        _, scores, terms = self.magnet_step(model, batch)
        return StepOutput(terms.loss, scores, {"magnet": terms.loss.detach(), "sigma2": terms.variance.detach()},
                          per_example=terms.per_example.detach())

    def observe(self, batch: Batch, out: StepOutput) -> None:
        """Record the batch's example losses, by which the next seed clusters are drawn.

        The index and the example losses live on the host, like any sampler's state; on a GPU
        this copies the batch's losses to it, the one transfer per step the method needs (the
        next batch depends on them).
        """
        if batch.index is not None and out.per_example is not None and self.example_losses is not None:
            self.example_losses[batch.index.cpu()] = out.per_example.float().cpu()

    # -- state --

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The warm start's linear classifier, when there is one."""
        return [] if self.pretrain_head is None else list(self.pretrain_head.parameters())

    def state_dict(self) -> dict:
        return {"index": None if self.index is None else self.index.state_dict(),
                "example_losses": self.example_losses,
                "pretrain_head": None if self.pretrain_head is None else self.pretrain_head.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.index = None if state.get("index") is None else ClusterIndex.from_state_dict(state["index"])
        losses = state.get("example_losses")
        self.example_losses = None if losses is None else losses.detach().cpu().float().clone()
        if self.pretrain_head is not None and state.get("pretrain_head") is not None:
            self.pretrain_head.load_state_dict(state["pretrain_head"])


class ClusTRQTrades(ClusTR):
    """ClusTR+QTRADES: ``L = L_magnet(clean) + lam * mean_b L_cons(x_b, x_adv_b)``.

    README.md, "ClusTR+QTRADES".

    ``x_adv``: a uniform start in the L-inf ball, one signed step of ``step_size`` on the
    cross-entropy between the *detached* clean distribution ``p(x)`` (softmax of the
    log-domain scores = L1-normalised ``S``) and ``softmax(S(x_adv))``, then projection to
    the ball and [0, 1]. Crafted in eval mode with BatchNorm's batch statistics
    (``attack_bn="train"``, as the official code crafts in train mode; running statistics are
    not touched).

    The trap of the official ``"ce"`` consistency: its adversarial side is a softmax of the
    *raw* scores ``S = exp(log S)``. When the adversarial features lie many cluster widths from
    every centre, every ``S_c`` is ~0, the softmax is uniform, the term equals ``log K`` for any
    clean distribution and its gradient (which flows through ``S``) vanishes: training is then
    plain ClusTR. The logged ``consistency_pinned`` is the share of adversarial points whose
    largest ``S_c`` is below ``0.01`` (their gradient is under 1% of its scale); ``epoch_notes``
    warns about an epoch whose mean consistency is within 0.005 nats of ``log K`` while most
    points are pinned (README.md, "The QTRADES term gets pinned at log C"; here K is the
    number of classes).

    Defaults follow the official code: consistency ``"ce"`` (not KL) and the clean
    distribution *not* detached in the loss term. Switches: ``consistency="kl"`` (TRADES
    KL between normalised distributions), ``consistency="mse"`` (squared distance of clean
    and adversarial embeddings, the official ``--mse-consistency``), ``detach_clean=True``.
    The attack criterion is always the official CE. The ``--actual-trades`` 10-step KL
    attack and the "free" replay variant are not implemented.

    Args:
        eps: L-inf budget in [0, 1] pixel units (CIFAR: 8/255).
        lam: lambda, the weight of the consistency term (official: 8).
        step_size: the attack step (default ``1.25 * eps``, 10/255 on CIFAR).
        consistency: ``"ce"``, ``"kl"`` or ``"mse"``.
        detach_clean: stop gradients through the clean side of the consistency term.
        attack_bn: BatchNorm mode while crafting, ``"train"`` (official) or ``"eval"``.
        **clustr_kwargs: everything ``ClusTR`` takes.

    Logged terms: ``magnet``, ``consistency`` (before ``lam``), ``sigma2`` and, for the
    ``"ce"`` consistency, ``consistency_pinned``.

    Example:
        >>> from robustviz.methods.clustr import RECIPES
        >>> history = fit(model, bundle, RECIPES[1], epochs=2)  # doctest: +SKIP
    """

    # An epoch counts as pinned when its mean consistency is within PINNED_NATS of log K and more
    # than PINNED_SHARE of its adversarial points have every raw class score below PINNED_SCORE.
    PINNED_NATS = 0.005
    PINNED_SHARE = 0.5
    PINNED_SCORE = 0.01

    key = "clustr_qtrades"

    def __init__(self, eps: float, lam: float = 8.0, step_size: float | None = None, consistency: str = "ce",
                 detach_clean: bool = False, attack_bn: str = "train", **clustr_kwargs) -> None:
        super().__init__(eps=eps, **clustr_kwargs)
        crafting_batchnorm(nn.Identity(), attack_bn)  # validates the mode
        if eps is None or not 0 <= eps <= 1:
            raise ValueError(f"eps must be in [0, 1] pixel units, got {eps}")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if consistency not in CONSISTENCY_KINDS:
            raise ValueError(f"consistency must be one of {CONSISTENCY_KINDS}, got {consistency!r}")
        self.lam = lam
        self.step_size = 1.25 * eps if step_size is None else step_size
        self.consistency, self.detach_clean = consistency, detach_clean
        self.attack_bn = attack_bn
        self.num_classes: int | None = None

    def attach(self, model: nn.Module) -> None:
        super().attach(model)
        self.num_classes = model.num_classes

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, clean_log_scores: torch.Tensor) -> torch.Tensor:
        """The one-step adversarial batch ``x_adv`` (same shape as ``x``, in the ball and [0, 1])."""
        target = clean_log_scores.detach()

        def criterion(scores: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return qtrades_consistency(target, scores, "ce")

        with crafting_batchnorm(model, self.attack_bn):
            return pgd(model, x, y, self.eps, steps=1, step_size=self.step_size, loss=criterion)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        if self.pretraining(step.epoch):
            return self.pretrain_loss(model, batch)
        z, scores, terms = self.magnet_step(model, batch)
        x_adv = self.craft(model, batch.x, batch.y, scores)
        z_adv = model.features(x_adv)
        logged = {"magnet": terms.loss.detach()}
        if self.consistency == "mse":
            cons = embedding_consistency(z, z_adv, self.detach_clean)
        else:
            adv_scores = model.head(z_adv)
            cons = qtrades_consistency(scores, adv_scores, self.consistency, self.detach_clean)
        cons = cons.mean()
        logged.update(consistency=cons.detach(), sigma2=terms.variance.detach())
        if self.consistency == "ce":
            largest = adv_scores.detach().float().max(dim=1).values
            logged["consistency_pinned"] = (largest < math.log(self.PINNED_SCORE)).float().mean()
        return StepOutput(terms.loss + self.lam * cons, scores, logged, per_example=terms.per_example.detach())

    def epoch_notes(self, record: dict) -> dict[str, str]:
        """``consistency_pinned`` when the epoch's consistency term was stuck at ``log K``."""
        share, value = record.get("consistency_pinned"), record.get("consistency")
        if share is None or value is None or self.num_classes is None:
            return {}
        log_k = math.log(self.num_classes)
        if abs(value - log_k) >= self.PINNED_NATS or share <= self.PINNED_SHARE:
            return {}
        return {"consistency_pinned": (
            f"{self.key}: the QTRADES consistency term was pinned at log K = {log_k:.4f} in epoch "
            f"{record.get('epoch')} (measured {value:.4f}; {100 * share:.1f}% of the adversarial points had every "
            f"exp-domain class score below {self.PINNED_SCORE:g}), so it gave the network almost no gradient and "
            "the epoch trained plain ClusTR. The adversarial features lie far from every cluster centre; a "
            "smaller eps or step, or consistency='kl' (log domain), keeps the term active."
        )}
