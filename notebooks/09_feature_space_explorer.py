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
# # 09 · The feature-space explorer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/09_feature_space_explorer.ipynb)
#
# **Learning objectives.** After this notebook you can
#
# 1. explore every model trained in this course side by side: pick a model, an attack, a 2-D map
#    and the classes shown, and move the eps slider to watch the adversarial features travel;
# 2. say what a 2-D map of a feature space can and cannot show (its trustworthiness);
# 3. compare models by separation metrics measured in the feature space itself, not in a map.

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
ALWAYS = ["ce", "pgd_at", "fgsm_at"]  # trained if missing; every other finished run is picked up too

# %%
# %matplotlib inline
import numpy as np
from IPython.display import Markdown, display

from robustviz import runs, viz
from robustviz.viz import precompute, separation_metrics

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()

# %% [markdown]
# ## 1. Every model of the course
#
# `course.finished()` lists the recipes with a finished run in the cache for these settings
# (everything the earlier notebooks trained); the `ALWAYS` ones are trained if they are missing.

# %%
keys = list(dict.fromkeys(ALWAYS + course.finished()))
models = {key: course.train(key)[0] for key in keys}
print("models:", ", ".join(models))

# %% [markdown]
# ## 2. Precompute once, explore instantly
#
# The explorer attacks every model at every eps on the slider, extracts the features and fits
# the 2-D maps *once*, up front; moving a widget afterwards only moves points. Each map is fitted
# on the clean features and the adversarial features are placed into it, so an arrow shows where
# the attack moved a point *in the clean geometry*.

# %%
explored = precompute(models, bundle, attacks=course.pick(("fgsm",), ("fgsm", "pgd-10")),
                      eps_values=(0.0, 0.1, 0.2, EPS), methods=course.pick(("pca", "lda"), ("pca", "lda", "umap")),
                      n=course.pick(300, 1000), seed=SEED, progress=False)

# %% tags=["widget"]
explorer = viz.explorer(explored)
explorer

# %% [markdown]
# Without a live kernel (a static page, a script) the same explorer shows one figure per eps for
# the current choice; `static_figures()` returns them:

# %% tags=["plot"]
explorer.run_selector.value = "pgd_at" if "pgd_at" in models else keys[0]
explorer.static_figures()[-1]

# %% [markdown]
# ## 3. A map is a summary: its trustworthiness
#
# Every map comes with its *trustworthiness* (Venna & Kaski 2001; scikit-learn's
# `trustworthiness`, $k = 5$ neighbours): with $U_i^{(k)}$ the points among the $k$ nearest
# neighbours of point $i$ *in the map* that are not among its $k$ nearest *in feature space*, and
# $r(i, j)$ the rank of $j$ among $i$'s neighbours in feature space,
#
# $$T(k) = 1 - \frac{2}{n k (2n - 3k - 1)} \sum_{i=1}^{n} \sum_{j \in U_i^{(k)}} \big(r(i, j) - k\big) \in [0, 1].$$
#
# $T = 1$: every neighbourhood of the map is a neighbourhood in feature space. PCA keeps global
# distances but crowds the classes; LDA uses the labels to pull them apart; UMAP (full profile)
# keeps neighbourhoods. Structure in a map with low trustworthiness may be invented by the map.

# %%
lines = ["| model | " + " | ".join(explored.methods) + " |", "|---|" + "---|" * len(explored.methods)]
lines += [f"| {key} | " + " | ".join(f"{explored.projections[(key, m, explored.attacks[0], EPS)].trustworthiness:.2f}"
                                      for m in explored.methods) + " |" for key in models]
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 4. Separation, measured in the feature space
#
# Four numbers per model on the clean features and on their FGSM copies at $\epsilon = 0.1$
# (no map involved): the intra/inter-class distance ratio (smaller is tighter), the Fisher
# criterion (larger is better separated), the silhouette, and the mean margin to the nearest
# other-class centre (class means, or the model's own prototypes/centres).

# %%
lines = ["| model | intra/inter clean | adversarial | silhouette clean | adversarial |", "|---|---|---|---|---|"]
for key in models:
    feats = explored.features[key][(explored.attacks[0], 0.1)]
    clean, adv = separation_metrics(feats.clean, feats.labels), separation_metrics(feats.adversarial, feats.labels)
    lines.append(f"| {key} | {clean['intra/inter ratio']:.2f} | {adv['intra/inter ratio']:.2f} | "
                 f"{clean['silhouette']:.2f} | {adv['silhouette']:.2f} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Exercises
#
# 1. **Pick a pair.** In the explorer, choose `ce` and then `pgd_at`, attack `fgsm`, map `lda`, and
#    move eps from 0 to 0.3. Where do the adversarial points of each model go: into one class,
#    into the middle, or do they stay?
# 2. **Only two classes.** Use the class filter to show only "4" and "9". Which model keeps them
#    apart under attack?
# 3. **A prototype model.** If notebook 04 ran, the 3-D DRP model is cached
#    (`course.train("drp", feat_dim=3)`). Open `viz.prototype_explorer` on it.

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Solution 1.** For the standard model the crosses leave their class cluster at small eps and
# land in other clusters (the arrows cross the map); for the adversarially trained model most
# stay in or near their own cluster up to the training budget. Remember that the map was fitted on
# clean features: an adversarial point placed "between" clusters may be anywhere in the 200-d space.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
for key in models:
    feats = explored.features[key][(explored.attacks[0], EPS)]
    pair = np.isin(feats.labels.numpy(), [4, 9])
    kept = (feats.pred_adv[pair] == feats.labels[pair]).float().mean()
    print(f"{key:<15} 4s and 9s still correct under {explored.attacks[0]} at eps {EPS}: {100 * kept:.0f}%")

# %% tags=["solution", "widget"] jupyter={"source_hidden": true}
# @title Solution 3
sphere_model, _ = course.train("drp", feat_dim=3, progress=False)
viz.prototype_explorer(sphere_model, bundle, attacks=("fgsm",), eps_values=(0.0, 0.1, 0.2), n=200, seed=SEED,
                       progress=False, name="drp, d = 3")

# %% [markdown]
# ## Summary
#
# * The explorer puts every cached model side by side; all the expensive work is done once.
# * A 2-D map is a summary with a trustworthiness score; separation metrics in the feature space
#   itself are the numbers to compare.
# * The course in one picture: standard and pseudo-robust models let the attack carry points
#   across classes; adversarial training keeps them home.
#
# Back to the start: [00 · Tour](00_tour.ipynb).
