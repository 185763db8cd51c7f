# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · ADR: local and global compactness, and the clustering assumption
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/06_compactness.ipynb)
#
# **Learning objectives.** After this notebook you can
#
# 1. write down ADR's four regularisers and say what each one pulls or pushes;
# 2. measure the *divergence* ADR is named after: how far an adversarial input's representation
#    drifts from its clean copy, layer by layer;
# 3. run an ablation (switch the terms off one group at a time) and read it with the noise of a
#    small experiment in mind.

# %% tags=["colab"]
# On Colab: fetch robustviz (the code and its embedded dataset) and install it. Elsewhere: nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    if not os.path.isdir("/content/robustviz"):
        subprocess.run(["git", "clone", "-q", "--depth", "1", "https://github.com/robustviz-org/robustviz",
                        "/content/robustviz"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/robustviz"], check=True)
    sys.path.insert(0, "/content/robustviz")
    from google.colab import output

    output.enable_custom_widget_manager()

# %% tags=["parameters"]
PROFILE = "quick"  # "quick": CPU, minutes (2,000 training images); "full": the papers' settings (a GPU)
SEED = 0
DATASET = "mnist-mini"
N_TRAIN = None  # None: the profile's default (quick 2,000, full all)
EPS = 0.3

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from robustviz import runs, viz
from robustviz.attacks import pgd
from robustviz.evaluate import evaluate_robustness

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(300, 2000))

# %% [markdown]
# ## 1. The terms
#
# ADR (Bui et al. 2020, [arXiv:2007.05123](https://arxiv.org/abs/2007.05123)) keeps PGD
# adversarial training and adds regularisers on the features $z = g(x)$ (the layer before the
# classifier), with $x^a$ the PGD example of $x$, batch size $b$ and feature size $k$:
#
# * **local compactness**: each adversarial representation stays close to its own clean one,
#   $\displaystyle L_{lc} = \frac{1}{b}\sum_i \frac{1}{k}\,\|z_i - z_i^a\|_1$;
# * **global compactness**: it is also pulled towards the clean representations of every
#   same-class sample of the batch, and very weakly pushed away from the others,
#   $\displaystyle L_{gc} = \frac{1}{b^2}\sum_{i,j} w_{ij}\,\frac{1}{k}\,\|z_j - z_i^a\|_1$ with
#   $w_{ij} = 1$ for $y_i = y_j$ and $w_{ij} = 1 - 1/0.99 \approx -0.01$ otherwise;
# * **clustering assumption** (decision boundaries in low-density regions): confident
#   adversarial predictions, $L_{ent} = \frac{1}{b}\sum_i H\big(p(x_i^a)\big)$, and clean and
#   adversarial predictions that agree, $L_{vat} = \frac{1}{b}\sum_i \mathrm{CE}\big(p(x_i), p(x_i^a)\big)$
#   (clean side fixed).
#
# $$L = \tfrac12\,\mathrm{CE}(x) + \tfrac12\,\mathrm{CE}(x^a) + \lambda_{lc}L_{lc} + \lambda_{gc}L_{gc} + \lambda_{ent}L_{ent} + \lambda_{vat}L_{vat},
# \qquad \lambda = 1 \text{ each (the authors' code).}$$
#
# (In the quick profile robustviz lets $L_{lc}$ and $L_{gc}$ move the clean features too,
# `detach_clean=False`: with the authors' fixed clean target the features of this small CNN
# grew without bound; the recipe's docstring has the measurements.)

# %% [markdown]
# ## 2. Train, and follow every term
#
# Each term is logged per epoch in the training history (`lc`, `gc`, `ent`, `vat`, next to the
# base `clean_ce` and `adv_ce`; `gs` is the unused global smoothness term):

# %%
models = {key: course.train(key)[0] for key in ("ce", "pgd_at")}
models["adr"], adr_history = course.train("adr")
terms = ("clean_ce", "adv_ce", "lc", "gc", "ent", "vat")
lines = ["| epoch | " + " | ".join(terms) + " |", "|---:" * (len(terms) + 1) + "|"]
lines += [f"| {r['epoch']} | " + " | ".join(f"{r[t]:.3f}" for t in terms) + " |" for r in adr_history.records]
display(Markdown("\n".join(lines)))

# %% [markdown]
# The held-out clean and PGD accuracy during training (middle panel):

# %% tags=["plot"]
viz.plot_training_curves({"adr": adr_history})

# %% [markdown]
# ## 3. Layer-wise divergence
#
# For each layer $l$, the mean relative distance between the clean and the adversarial
# representation, $\|h_l(x) - h_l(x^a)\|_2 / \|h_l(x)\|_2$, with $x^a$ PGD-20 at
# $\epsilon = 0.3$ crafted against each model itself. In the standard model the relative change
# is large and largest at the output; adversarial training keeps it smaller in every layer.

# %% tags=["plot"]
xs, ys = test.x[:200], test.y[:200]
curves = {key: viz.layerwise_divergence(model, xs, pgd(model, xs, ys, eps=EPS, steps=20, seed=SEED))
          for key, model in models.items()}
viz.plot_layer_divergence(curves)

# %% [markdown]
# ## 4. Robustness
#
# Solid: FGSM, dashed: PGD-20.

# %% tags=["plot"]
reports = {key: evaluate_robustness(model, test.x, test.y, eps=(0.1, 0.2, EPS), attacks=("fgsm", "pgd-20"),
                                    seed=SEED, progress=False)
           for key, model in models.items()}
viz.plot_accuracy_vs_eps(reports)

# %% [markdown]
# ## 5. Ablation
#
# Switch off one group of terms at a time. In the quick profile the ablation trains on 1,000
# images for 3 epochs (so it fits in a couple of minutes); in the full profile every variant gets
# the recipe's full settings.

# %%
ablation_settings = course.pick({"n_train": 1000, "epochs": 3}, {})
variants = {
    "ADR (all terms)": {},
    "no compactness (lc = gc = 0)": dict(lambda_lc=0.0, lambda_gc=0.0),
    "no clustering terms (ent = vat = 0)": dict(lambda_ent=0.0, lambda_vat=0.0),
}
ablation = {}
for name, weights in variants.items():
    model, _ = course.train("adr", method_kwargs=weights, progress=False, **ablation_settings)
    ablation[name] = evaluate_robustness(model, test.x, test.y, eps=(0.2, EPS), attacks=("pgd-20",), seed=SEED,
                                         progress=False)
    accuracies = ablation[name].results
    print(f"{name:<38} clean {100 * ablation[name].clean_acc:5.1f}%  PGD-20 at 0.2 "
          f"{100 * accuracies[0.2]['PGD-20']:5.1f}%, at {EPS} {100 * accuracies[EPS]['PGD-20']:5.1f}%")

# %% tags=["plot"]
viz.plot_accuracy_vs_eps(ablation)

# %% [markdown]
# How big is a difference of a few points here? Test images are a sample: with $n = 300$ the
# standard error of an accuracy $p$ is $\sqrt{p(1-p)/n}$, about 2.9 points at $p = 0.5$, and a
# different training seed moves the numbers by about as much. Read the ablation as a picture of
# *what each term does to the curves*; conclusions about which term helps need several seeds and
# the full profile (the paper's own ablation tables are not available).

# %% [markdown]
# ## Exercises
#
# 1. **Compactness, measured.** Compute $L_{lc}$ for the PGD-AT and the ADR model on a test batch
#    (`robustviz.losses.adr.local_compactness(z_clean, z_adv)`). Which is more compact?
# 2. **Global compactness in pictures.** Map the ADR model's features with PCA, clean and under
#    PGD-20 at $\epsilon = 0.3$, and compare with `pgd_at`'s map.
# 3. **A second seed.** Train the full-ADR variant of the ablation again with another seed
#    (`course.train("adr", seed=1, ...)`). How much does its PGD-20 accuracy move?

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
from robustviz.losses.adr import local_compactness
from robustviz.viz import features_of

for key in ("pgd_at", "adr"):
    model = models[key]
    x_adv = pgd(model, xs, ys, eps=EPS, steps=20, seed=SEED)
    lc = local_compactness(features_of(model, xs), features_of(model, x_adv))
    scale = float(features_of(model, xs).abs().mean())
    print(f"{key:<7} L_lc on PGD-20 pairs: {float(lc):.4f}  (mean |z| {scale:.3f})")
# Compare L_lc relative to the feature scale: an L1 distance means little without the size of z.

# %% tags=["solution", "plot"] jupyter={"source_hidden": true}
# @title Solution 2
for key in ("pgd_at", "adr"):
    feats = viz.extract(models[key], test, attack="pgd-20", eps=EPS, n=course.pick(300, 1000), seed=SEED)
    display(viz.plot_embedding(feats, method="pca", classes=bundle.classes, title=key))

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
second, _ = course.train("adr", seed=1, progress=False, **ablation_settings)
again = evaluate_robustness(second, test.x, test.y, eps=(EPS,), attacks=("pgd-20",), progress=False)
print(f"PGD-20 at {EPS}: seed 0 {100 * ablation['ADR (all terms)'].results[EPS]['PGD-20']:.1f}%, "
      f"seed 1 {100 * again.results[EPS]['PGD-20']:.1f}%")

# %% [markdown]
# ## Summary
#
# * ADR adds feature-space terms to adversarial training: local and global compactness of the
#   adversarial representations, and low-entropy, consistent adversarial predictions.
# * The divergence it is named after is easy to measure: adversarial training (with or without
#   the terms) keeps the clean and adversarial representations close in every layer.
# * Ablations on small data are noisy; report them with seeds and standard errors.
#
# Next: [07 · Single-step regularizers](07_single_step_regularizers.ipynb).
