"""Figures and feature extraction. Plot functions return matplotlib ``Figure`` objects.

Example:
    >>> from robustviz.viz import plot_accuracy_vs_eps
    >>> fig = plot_accuracy_vs_eps({"pgd_at": report})  # doctest: +SKIP
    >>> fig.savefig("accuracy.png")  # doctest: +SKIP
"""

from .features import features_of
from .plots import plot_accuracy_vs_eps, plot_feature_pca

__all__ = ["features_of", "plot_accuracy_vs_eps", "plot_feature_pca"]
