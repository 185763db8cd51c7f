"""robustviz: a notebook-first teaching toolkit for feature-space adversarial robustness.

Subpackages (data flows one way, top to bottom):
    data      datasets as tensors in [0, 1] plus metadata
    models    backbones with the features()/head()/forward() contract
    methods   training recipes (loss, training-time attack, defaults)
    attacks   FGSM, PGD, ... over any scores function
    train     fit(): one loop for every method
    evaluate  clean and robust accuracy, per-sample worst case
    viz       figures
"""

__version__ = "0.1.0"
