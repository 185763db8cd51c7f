"""Feature-space visualisation: extraction, 2-D maps, geometry, separation, landscapes, explorers.

Every plot function returns a ``matplotlib.figure.Figure`` (no pyplot state): it renders
inline in a notebook and saves headless with ``fig.savefig(path)``. The explorers are
ipywidgets around such figures and fall back to static figures outside a kernel.

| module | what it holds |
|---|---|
| ``extraction`` | ``extract`` (any layer, clean + adversarial, labels, predictions), ``features_of``, ``layer_names`` |
| ``projection`` | ``project`` (UMAP / t-SNE / PCA / LDA fitted on clean features, cached, with trustworthiness) |
| ``embedding_plots`` | ``plot_embedding`` (2-D maps), ``plot_feature_space`` (direct 2-D/3-D features + centres) |
| ``geometry`` | ``plot_prototype_geometry``, ``prototype_angles`` |
| ``separation`` | ``separation_metrics``, ``margins``, ``plot_separation`` |
| ``divergence`` | ``layerwise_divergence``, ``plot_layer_divergence`` (ADR's motivation) |
| ``landscape`` | ``plot_loss_along_fgsm``, ``plot_loss_landscape``, ``plot_gradient_norms`` |
| ``training_plots`` | ``plot_training_curves`` |
| ``images`` | ``plot_image_grid`` (clean and adversarial inputs with labels or predictions) |
| ``plots`` | ``plot_accuracy_vs_eps``, ``plot_feature_pca``, ``plot_ladder``, ``plot_certified_accuracy``, |
| | ``plot_tradeoff`` |
| ``explorers`` | ``explorer``, ``prototype_explorer`` (ipywidgets; click a point to inspect it) |
| ``inspection`` | ``point_details``, ``plot_point``, ``describe_point`` (one point: images, classes, path) |
| ``linked`` | ``linked_explorer``: two runs side by side, a selection in one rings the points in both |
| ``canvas`` | ``Surface``: ipympl's canvas (zoom, pan, clicks) or a PNG image without ipympl |

Example:
    >>> from robustviz.viz import extract, plot_embedding
    >>> feats = extract(model, bundle, attack="pgd-20", eps=0.3, n=2000)  # doctest: +SKIP
    >>> plot_embedding(feats, method="umap").savefig("umap.png")  # doctest: +SKIP
"""

from .divergence import default_layers, layerwise_divergence, plot_layer_divergence
from .embedding_plots import feature_centres, plot_embedding, plot_feature_space
from .explorers import ExplorerData, FeatureExplorer, PrototypeExplorer, explorer, precompute, prototype_explorer
from .extraction import Features, extract, features_of, layer_names
from .geometry import plot_prototype_geometry, prototype_angles
from .images import plot_image_grid
from .inspection import PointDetails, describe_point, plot_point, point_details
from .landscape import (
    loss_landscape,
    plot_gradient_norms,
    plot_loss_along_fgsm,
    plot_loss_landscape,
)
from .linked import LinkedExplorer, linked_explorer
from .plots import plot_accuracy_vs_eps, plot_certified_accuracy, plot_feature_pca, plot_ladder, plot_tradeoff
from .projection import PROJECTION_METHODS, Projection, clear_projection_cache, map_trustworthiness, project
from .separation import margins, plot_separation, separation_metrics
from .training_plots import plot_training_curves

__all__ = [
    "PROJECTION_METHODS", "ExplorerData", "FeatureExplorer", "Features", "PointDetails", "Projection",
    "LinkedExplorer", "PrototypeExplorer", "describe_point", "linked_explorer", "plot_point", "point_details",
    "clear_projection_cache", "default_layers", "explorer", "extract", "feature_centres",
    "features_of", "layer_names", "layerwise_divergence", "loss_landscape",
    "map_trustworthiness", "margins", "plot_accuracy_vs_eps", "plot_certified_accuracy", "plot_tradeoff",
    "plot_image_grid",
    "plot_embedding", "plot_feature_pca", "plot_feature_space", "plot_ladder", "plot_layer_divergence",
    "plot_gradient_norms", "plot_loss_along_fgsm", "plot_loss_landscape", "plot_prototype_geometry", "plot_separation",
    "plot_training_curves", "precompute", "project", "prototype_angles", "prototype_explorer",
    "separation_metrics",
]
