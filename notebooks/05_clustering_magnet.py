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
# # 05 · ClusTR: Magnet-loss clusters, a certificate, and a robustness that collapsed
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/05_clustering_magnet.ipynb)
#
# **Learning objectives.** After this notebook you can
#
# 1. state the Magnet loss and the soft nearest-cluster rule of ClusTR;
# 2. derive the certified radius of a nearest-centre classifier from the bisectors between
#    centres, and say what it does and does not certify;
# 3. reproduce *why* ClusTR's reported robustness (74% under PGD on CIFAR-10) fell to 0.03%
#    under AutoAttack: attacks on exponentially small scores have vanishing gradients.

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
EPS = 0.1  # ClusTR's PGD robustness on mnist-mini is only visible at small budgets

# %%
# %matplotlib inline
import torch

from robustviz import runs, viz
from robustviz.evaluate import certified_accuracy, certified_radii, evaluate_robustness, ladder
from robustviz.methods.clustr import PaperScores, score_gradient_norms

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(300, 2000))

# %% [markdown]
# ## 1. The Magnet loss and the nearest-cluster rule
#
# ClusTR (Alfarra et al. 2020, [arXiv:2006.07682](https://arxiv.org/abs/2006.07682)) represents
# each class by $K$ cluster centres $\mu_k$ in feature space (k-means on the training
# features, refreshed every epoch) and trains the features $r = f(x)$ with the **Magnet loss**
# (Rippel et al. 2016): for an example $n$ in batch cluster $m(n)$, with batch cluster means
# $\hat\mu_m$ and one shared variance $\hat\sigma^2$,
#
# $$\ell_n = \Big[-\log \frac{\exp\!\big(-\tfrac{\|r_n - \hat\mu_{m(n)}\|^2}{2\hat\sigma^2} - \alpha\big)}
# {\sum_{m':\, c(m') \ne y_n} \exp\!\big(-\tfrac{\|r_n - \hat\mu_{m'}\|^2}{2\hat\sigma^2}\big)}\Big]_+ ,$$
#
# i.e. each example must be closer to its own cluster than to every other-class cluster, by a
# margin $\alpha$ (12.5 in ClusTR) in units of the cluster variance. The class score is a
# Gaussian vote of the $L$ nearest centres, $S_c(x) = \sum_{j \in T(x),\, c(j) = c} \exp\!\big(-\|f(x) - \mu_j\|^2 / 2\sigma^2\big)$.
# ClusTR trains *without* adversarial examples.
#
# On the 2-D toy `blobs` the features, the six centres (two per class, stars) and the PGD-20
# copies at twice the toy's budget can be drawn directly:

# %% tags=["plot"]
toy = course.data("blobs")
toy_model, _ = course.train("clustr", dataset="blobs")
viz.plot_feature_space(viz.extract(toy_model, toy, attack="pgd-20", eps=2 * toy.eps, n=300, seed=SEED),
                       model=toy_model, classes=toy.classes)

# %% [markdown]
# ## 2. ClusTR on mnist-mini
#
# The features are the CNN's 200-d penultimate layer; the margin histogram uses the cluster
# centres (distance to the nearest bisector with another class's centre).

# %% tags=["plot"]
model, history = course.train("clustr")
feats = viz.extract(model, test, attack="pgd-20", eps=EPS, n=course.pick(300, 1000), seed=SEED)
viz.plot_separation(feats, model)

# %% [markdown]
# ## 3. The certificate
#
# For the *hard* nearest-centre rule $g(x) = c(\mu_i)$, $i = \arg\min_k \|f(x) - \mu_k\|$, the
# distance from $z = f(x)$ to the bisector of $\mu_i$ and another class's centre $\mu_j$ is
#
# $$h_{ij}(z) = \frac{\|z - \mu_j\|^2 - \|z - \mu_i\|^2}{2\,\|\mu_j - \mu_i\|}.$$
#
# While $f(x + \delta)$ moves less than $\min_j h_{ij}$ the label cannot change, so with $L_f$ the
# Lipschitz constant of $f$ (input $L_2$ to feature $L_2$):
#
# $$g(x + \delta) = g(x) \quad \text{for all } \|\delta\|_2 < R(x) = \frac{\min_{j:\, c(j) \ne c(i)} h_{ij}(f(x))}{L_f}.$$
#
# It certifies the hard rule (not the soft vote) against $L_2$ perturbations, with fixed centres.
# For deep networks only very loose upper bounds on $L_f$ exist, so the *feature-space* radius is
# what we can plot:

# %% tags=["plot"]
radius, correct = certified_radii(model, test.x, test.y)
grid = torch.linspace(0, float(radius.max()), 40).tolist()
print(f"hard-rule accuracy {100 * correct.float().mean():.1f}%, median certified feature radius "
      f"{float(radius[correct].median()):.2f}")
viz.plot_certified_accuracy({"clustr": (grid, certified_accuracy(radius, grid))})

# %% [markdown]
# ## 4. Why the reported robustness collapsed
#
# The official evaluation attacked the *paper's scores*, the normalised votes
# $S_c / \sum_{c'} S_{c'} \in [0, 1]$, with PGD on cross-entropy. Each $S_c$ is a sum of
# $\exp(-d^2/2\sigma^2)$ terms: far from every centre all of them are tiny, and once every
# $d^2/2\sigma^2$ exceeds about 87 they underflow to exactly 0 in float32. The attack's
# gradient then vanishes, PGD stalls, and the input counts as "robust". robustviz's model returns
# log-domain scores $\log S_c$ instead (`PaperScores(model)` is the paper's view of it).
#
# The norm of the attack's gradient with respect to the features, for a feature vector moved away
# from its class centre in a random direction, against its distance to that centre in units of
# the cluster width:

# %% tags=["plot"]
widths = [0.5, 2, 8, 32, 64, 90, 100, 128, 256]
viz.plot_gradient_norms(widths, score_gradient_norms(model.head, widths, label=0, seed=SEED))

# %% [markdown]
# Where do this model's test features lie? Their distance to the nearest centre, in the same units:

# %%
with torch.no_grad():
    nearest = -model.head.log_kernel(model.features(test.x)).max(dim=1).values
print(f"d^2 / 2 sigma^2 to the nearest centre: median {float(nearest.median()):.2f}, max {float(nearest.max()):.2f}")
paper_view = PaperScores(model)
for name, target in (("paper scores (the official evaluation)", paper_view), ("log-domain scores", model)):
    report = evaluate_robustness(target, test.x, test.y, eps=(EPS,), attacks=("pgd-20",), seed=SEED, progress=False)
    print(f"PGD-20 on the {name}: {100 * report.results[EPS]['PGD-20']:.1f}%")

# %% [markdown]
# This small quick-profile model keeps its features within a few cluster widths of the centres,
# where both views give useful gradients, so here the two attacks agree. The CIFAR-10 model of the
# paper (512-d features, margin $\alpha = 12.5$ cluster variances) was evaluated where they do not:
# RobustBench measured **74.04%** reported and **0.03%** under AutoAttack. The lesson holds for any
# model: attack the decision rule with losses whose gradients do not vanish (log-domain scores,
# margin, DLR) and check with AutoAttack.
#
# The attack ladder climbs from FGSM to AutoAttack (here its fast version, APGD-CE and APGD-T)
# on the model's own decision rule. *Reported* is the PGD-20 accuracy, *verified* the
# per-sample worst case over every attack.

# %% tags=["plot"]
report = ladder(model, test, EPS, level="quick", n=course.pick(100, 1000), seed=SEED, progress=False)
print(report.table())
viz.plot_ladder(report)

# %% [markdown]
# ## Exercises
#
# 1. **Soft vote versus hard rule.** On how many test images do the soft top-$L$ vote
#    (`model(x).argmax(1)`) and the hard nearest-centre rule (`model.head.nearest_class(z)`)
#    disagree? Why does the certificate only cover the hard rule?
# 2. **A lower bound is no certificate.** Estimate $L_f$ from PGD pairs as
#    $\max \|f(x') - f(x)\|_2 / \|x' - x\|_2$. Why can this estimate not be used in $R(x)$?
# 3. **ClusTR + QTRADES.** Train `clustr_qtrades` (a one-step consistency term between clean and
#    adversarial predictions) and climb the same ladder. Does the cheap adversarial term fix it?

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
with torch.no_grad():
    z = model.features(test.x)
    soft, hard = model(test.x).argmax(1), model.head.nearest_class(z)
print(f"soft and hard rules disagree on {int((soft != hard).sum())} of {len(soft)} test images")
# The certificate's argument is about which centre is nearest; the soft vote also depends on the
# other L - 1 centres' distances, so it can change without the nearest centre changing.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
from robustviz.attacks import pgd
from robustviz.viz import features_of

xs, ys = test.x[:200], test.y[:200]
x_adv = pgd(model, xs, ys, eps=EPS, steps=20, seed=SEED)
ratio = (features_of(model, x_adv) - features_of(model, xs)).norm(dim=1) / (x_adv - xs).flatten(1).norm(dim=1)
print(f"largest observed ratio ||f(x') - f(x)|| / ||x' - x||: {float(ratio.max()):.2f}")
# Any observed ratio is a *lower* bound of L_f. Dividing by a number smaller than L_f makes R(x)
# larger than it really is: the "certificate" would certify points that can be attacked.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
qtrades, _ = course.train("clustr_qtrades", progress=False)
print(ladder(qtrades, test, EPS, attacks=("pgd-20", "pgd-50-margin", "adaptive-50", "autoattack-fast"),
             n=course.pick(100, 1000), seed=SEED, progress=False).table())

# %% [markdown]
# ## Summary
#
# * ClusTR learns compact, well separated clusters (Magnet loss) and classifies by the nearest
#   clusters; for the hard nearest-centre rule a geometric certificate exists, in feature units.
# * Its reported PGD robustness came from attacking exponentially small scores: gradient
#   masking. Attacks on log-domain scores, margin/DLR losses and AutoAttack remove most of it
#   (RobustBench: 74.04% reported, 0.03% AutoAttack on CIFAR-10).
# * Well-clustered features are not the same as robust features.
#
# Next: [06 · Compactness (ADR)](06_compactness.ipynb).
