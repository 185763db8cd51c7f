"""ClusTR's cluster index (per-class k-means) and its neighbourhood batch sampler.

README.md in this folder: "Cluster index and its refresh" (the index and the global variance)
and "Neighbourhood sampling".

The index holds K k-means centres per class on the training embeddings; cluster ``k`` of
class ``c`` has the global id ``c * K + k``. A neighbourhood batch is one seed cluster
(drawn in proportion to its mean example loss) plus the ``M - 1`` other-class centres
nearest to it, with ``D`` examples drawn from each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ClusterIndex:
    """Per-class k-means clusters of the training embeddings.

    Attributes:
        centres: ``[C*K, d]`` float32 centroids; row ``c*K + k`` is cluster ``k`` of class ``c``.
        centre_labels: ``[C*K]`` int64 class of every centre (``id // K``).
        assignments: ``[N]`` int64 global cluster id of every training example (its nearest
            centre of its own class, so assignments never cross classes).
        variance: the global ``sigma^2 = sum_n ||r_n - mu_a(n)||^2 / (N - 1)``
            (squared feature units), used by the test-time rule.
        clusters_per_class: K.
    """

    centres: torch.Tensor
    centre_labels: torch.Tensor
    assignments: torch.Tensor
    variance: float
    clusters_per_class: int
    _members: list[torch.Tensor] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        order = torch.argsort(self.assignments, stable=True)
        sizes = self.cluster_sizes().tolist()
        self._members = list(torch.split(order, sizes))

    @property
    def num_clusters(self) -> int:
        return self.centres.shape[0]

    def cluster_sizes(self) -> torch.Tensor:
        """Members per cluster ``[C*K]`` (int64)."""
        return torch.bincount(self.assignments, minlength=self.num_clusters)

    def members(self, cluster: int) -> torch.Tensor:
        """Training indices ``[n_k]`` of the examples assigned to global cluster ``cluster``."""
        return self._members[cluster]

    def state_dict(self) -> dict:
        return {"centres": self.centres, "centre_labels": self.centre_labels,
                "assignments": self.assignments, "variance": self.variance,
                "clusters_per_class": self.clusters_per_class}

    @classmethod
    def from_state_dict(cls, state: dict) -> ClusterIndex:
        return cls(state["centres"].cpu(), state["centre_labels"].cpu(), state["assignments"].cpu(),
                   float(state["variance"]), int(state["clusters_per_class"]))


def build_cluster_index(
    z: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    clusters_per_class: int = 2,
    n_init: int = 1,
    max_iter: int = 20,
    seed: int = 1,
) -> ClusterIndex:
    """Run k-means per class (scikit-learn, k-means++ init) and build the cluster index.

    Args:
        z: training embeddings ``[N, d]``.
        y: their labels ``[N]`` (int64); every class needs at least ``clusters_per_class``
            examples.
        num_classes: C.
        clusters_per_class: K (ClusTR: 2).
        n_init, max_iter: k-means restarts and iterations (official: 1/20 on CIFAR-10,
            10/40 on CIFAR-100 and SVHN).
        seed: k-means ``random_state`` (official: 1, the same at every refresh).
    Returns:
        the ``ClusterIndex``; examples are assigned to their nearest centre of their own
        class, and ``variance`` is computed from those assignments.
    """
    from sklearn.cluster import KMeans

    z, y = z.detach().float().cpu(), y.cpu()
    if z.dim() != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"z must be [N, d] and y [N]; got {tuple(z.shape)} and {tuple(y.shape)}")
    if clusters_per_class < 1:
        raise ValueError(f"clusters_per_class must be >= 1, got {clusters_per_class}")
    if z.shape[0] < 2:
        raise ValueError("the cluster index needs at least 2 training examples")
    counts = torch.bincount(y, minlength=num_classes)
    if bool((counts < clusters_per_class).any()):
        raise ValueError(
            f"every class needs at least clusters_per_class={clusters_per_class} training examples; "
            f"per-class counts: {counts.tolist()}"
        )
    centres = []
    for c in range(num_classes):
        kmeans = KMeans(n_clusters=clusters_per_class, init="k-means++", n_init=n_init,
                        max_iter=max_iter, random_state=seed)
        kmeans.fit(z[y == c].numpy().astype(np.float64))
        centres.append(torch.from_numpy(kmeans.cluster_centers_).float())
    centres_t = torch.cat(centres)
    centre_labels = torch.arange(num_classes).repeat_interleave(clusters_per_class)
    assignments, sq_dist = nearest_same_class_centre(z, y, centres_t, clusters_per_class)
    variance = float(sq_dist.double().sum() / (z.shape[0] - 1))
    return ClusterIndex(centres_t, centre_labels, assignments, variance, clusters_per_class)


def nearest_same_class_centre(
    z: torch.Tensor, y: torch.Tensor, centres: torch.Tensor, clusters_per_class: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global id ``[N]`` of each example's nearest centre of its own class, and the squared distance ``[N]``."""
    own = centres.view(-1, clusters_per_class, centres.shape[1])[y]  # [N, K, d]
    sq_dist = (z[:, None, :] - own).pow(2).sum(-1)  # [N, K]
    best, k = sq_dist.min(dim=1)
    return y * clusters_per_class + k, best


# ---- neighbourhood sampling ------------------------------------------------------------


def cluster_mean_losses(index: ClusterIndex, example_losses: torch.Tensor) -> torch.Tensor:
    """Mean observed loss per cluster ``[C*K]``; ``NaN`` where no member has been observed.

    ``example_losses`` is ``[N]`` with ``NaN`` for examples never seen in a batch.
    """
    observed = ~torch.isnan(example_losses)
    ids = index.assignments[observed]
    totals = torch.zeros(index.num_clusters, dtype=torch.float64).index_add_(
        0, ids, example_losses[observed].double())
    seen = torch.bincount(ids, minlength=index.num_clusters)
    means = totals / seen.clamp_min(1)
    return means.masked_fill(seen == 0, float("nan"))


def seed_distribution(index: ClusterIndex, example_losses: torch.Tensor) -> torch.Tensor:
    """Probability ``[C*K]`` of drawing each cluster as the seed of a batch (README.md,
    "Neighbourhood sampling", step 1).

    Proportional to the cluster's mean observed example loss (a hinged loss of 0 counts as
    observed); uniform over the non-empty clusters while no loss has been observed (or every
    observed loss is 0). A cluster none of whose members has been observed yet gets the
    average of the observed cluster means [robustviz choice: it keeps unseen clusters in
    play, e.g. after a refresh]. Empty clusters get probability 0.
    """
    non_empty = index.cluster_sizes() > 0
    means = cluster_mean_losses(index, example_losses)
    observed = ~torch.isnan(means) & non_empty
    # Host-side tensors (the index lives on the CPU): reading them never waits for a GPU.
    if not observed.any().tolist() or means[observed].sum().tolist() <= 0:
        weights = non_empty.double()
    else:
        weights = torch.where(observed, means, means[observed].mean())
        weights = weights.masked_fill(~non_empty, 0.0)
    return weights / weights.sum()


def nearest_impostors(index: ClusterIndex, seed: int, count: int) -> torch.Tensor:
    """The ``count`` non-empty clusters of *other* classes whose centroids are nearest the seed's.

    Euclidean distance between k-means centroids (README.md, "Neighbourhood sampling", step 2);
    fewer are returned when fewer exist. Ties are broken by the lower cluster id.
    """
    candidates = torch.nonzero(
        (index.centre_labels != index.centre_labels[seed]) & (index.cluster_sizes() > 0)
    ).flatten()
    dist = (index.centres[candidates] - index.centres[seed]).pow(2).sum(1)
    order = torch.argsort(dist, stable=True)
    return candidates[order[:count]]


def neighbourhood_batch(
    index: ClusterIndex,
    example_losses: torch.Tensor,
    clusters_per_batch: int,
    examples_per_cluster: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one neighbourhood batch with the global torch RNG (README.md, "Neighbourhood sampling").

    Args:
        index: the cluster index.
        example_losses: ``[N]`` last observed loss per training example (``NaN``: unseen).
        clusters_per_batch: M (the seed plus ``M - 1`` impostor clusters).
        examples_per_cluster: D; a cluster with fewer members gives all of them (a
            single-member cluster is allowed, unlike the official assertion: the loss stays
            defined as long as the batch variance is positive).
    Returns:
        ``(indices [B], groups [B])``: training indices laid out as contiguous groups, and
        each example's batch cluster ``0..M'-1`` (``M' <= M`` when fewer other-class
        clusters exist). ``B <= M * D``.
    """
    if clusters_per_batch < 2:
        raise ValueError(f"clusters_per_batch must be >= 2 (a seed and an impostor), got {clusters_per_batch}")
    if examples_per_cluster < 1:
        raise ValueError(f"examples_per_cluster must be >= 1, got {examples_per_cluster}")
    seed = torch.multinomial(seed_distribution(index, example_losses).float(), 1).tolist()[0]
    clusters = torch.cat([torch.tensor([seed]), nearest_impostors(index, seed, clusters_per_batch - 1)])
    picks = []
    for cluster in clusters.tolist():
        members = index.members(cluster)
        picks.append(members[torch.randperm(members.shape[0])[:examples_per_cluster]])
    groups = torch.cat([torch.full((p.shape[0],), g, dtype=torch.int64) for g, p in enumerate(picks)])
    return torch.cat(picks), groups
