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
# **Prerequisites:** notebooks 01 (PGD, margin losses) and 04 (decision rules in feature space);
# k-means; the Gaussian kernel; floating-point numbers.
# **Student time:** about 50 minutes, plus about 3 minutes of computing on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. state the Magnet loss and the soft nearest-cluster rule of ClusTR;
# 2. derive the certified radius of a nearest-centre classifier from the bisectors between
#    centres, and say what it does and does not certify;
# 3. reproduce *how* a reported robustness can collapse (ClusTR: 74 % under PGD on CIFAR-10,
#    0.03 % under AutoAttack): attacks on exponentially small scores have vanishing gradients,
#    and only a loss whose gradient cannot vanish measures the model.

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
PROFILE = "quick"  # "quick": CPU, minutes; "lab": one GPU, ~10 min per recipe; "full": the papers' settings
SEED = 0
DATASET = "mnist-mini"
N_TRAIN = None  # None: every training image; a number trains on a subset
EPS = 0.1  # ClusTR trains without adversarial examples: its robustness is visible at small budgets
EPS_MASKING = 0.2  # the budget of section 4's masking experiment
TIGHTER = 8  # section 4 divides the cluster variance by this factor

# %%
# %matplotlib inline
import copy
import warnings

import torch

from robustviz import viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.evaluate import certified_accuracy, certified_radii, evaluate_robustness, ladder
from robustviz.evaluate.intervals import format_accuracy
from robustviz.methods.clustr import PaperScores, score_gradient_norms
from robustviz.viz import features_of

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

# %%
with torch.no_grad():
    clean_accuracy = float((model(test.x).argmax(1) == test.y).float().mean())
expect(clean_accuracy > 0.9, "the Magnet clusters classify mnist-mini well",
       f"clean accuracy {format_accuracy(clean_accuracy, len(test.y))}",
       why="fewer epochs or training images than the quick profile's defaults")

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
# what we can plot. It is a statement about feature space only: it certifies nothing about
# input perturbations until it is divided by $L_f$.

# %% tags=["plot"]
radius, correct = certified_radii(model, test.x, test.y)
grid = torch.linspace(0, float(radius.max()), 40).tolist()
print(f"hard-rule accuracy {100 * correct.float().mean():.1f}%, median certified feature radius "
      f"{float(radius[correct].median()):.2f}")
viz.plot_certified_accuracy({"clustr": (grid, certified_accuracy(radius, grid))})

# %% [markdown]
# The certificate is a theorem, so an attack cannot break it: every test image whose features
# PGD moved by less than its certified radius must keep its hard-rule label. Check it, and see
# how many of the attacked images stayed inside their radius:

# %%
from robustviz.attacks import pgd

x_adv = pgd(model, test.x, test.y, eps=EPS, steps=20, seed=SEED)
z_clean, z_adv = features_of(model, test.x), features_of(model, x_adv)
moved = (z_adv - z_clean).norm(dim=1)
inside = correct & (moved < radius)
with torch.no_grad():
    kept = model.head.nearest_class(z_adv) == model.head.nearest_class(z_clean)
print(f"{int(inside.sum())} of {int(correct.sum())} correctly classified images moved less than their radius; "
      f"median move {float(moved.median()):.2f}, median radius {float(radius[correct].median()):.2f}")
expect(bool(kept[inside].all()), "the certificate holds: every image attacked within its radius kept its label",
       f"{int(kept[inside].sum())} of {int(inside.sum())} kept it")

# %% [markdown]
# ## 4. Why the reported robustness collapsed
#
# The official evaluation attacked the *paper's scores*, the normalised votes
# $p_c = S_c / \sum_{c'} S_{c'} \in [0, 1]$, with PGD on cross-entropy. Each $S_c$ is a sum of
# $e^{-w}$ terms with $w = d^2/2\sigma^2$, the squared distance "in cluster widths". In float32,
# $e^{-w}$ leaves the normal numbers at $w \approx 87.3$ ($e^{-87.3} \approx 1.2 \cdot 10^{-38}$),
# continues as ever less precise *subnormal* numbers, and is exactly 0 past $w \approx 103.3$.
# An image that sits near its own centre and more than about 104 widths from every other-class
# centre gets $p_y = 1$ and $p_{c \ne y} = 0$ *exactly*: the loss is 0, its gradient is 0, PGD
# never moves, and the image counts as "robust".
#
# The norm of the attack's gradient with respect to the features, for a feature vector moved away
# from a class-0 centre in a random direction, against that distance in cluster widths:

# %% tags=["plot"]
widths = [0.5, 2, 8, 32, 64, 90, 100, 128, 256]
norms = score_gradient_norms(model.head, widths, label=0, seed=SEED)
viz.plot_gradient_norms(widths, norms)

# %% [markdown]
# Read the paper scores' curve in three parts. Up to about 87 widths it is a real gradient. Between
# about 87 and 104 widths it is erratic (here a jump at 90 widths): the point has moved away from
# its own centre too, so *every* kernel, its own class's included, is a subnormal number with only
# a few significant bits left, and the normalisation $S_c / \sum_{c'} S_{c'}$ divides such numbers
# by each other. The result is rounding noise, not information about the model. Beyond about 104
# widths it is exactly 0. The log-domain scores never take an exponential of $-w$ and keep a
# gradient at every distance.

# %%
beyond = [i for i, w in enumerate(widths) if w > 104]
expect(all(norms["paper scores (exp domain)"][i] == 0 for i in beyond)
       and all(norms["log-domain scores"][i] > 0 for i in beyond),
       "beyond about 104 widths the paper scores' gradient is exactly 0, the log-domain scores' is not",
       ", ".join(f"{widths[i]} widths: {norms['paper scores (exp domain)'][i]:.1e} vs "
                 f"{norms['log-domain scores'][i]:.1e}" for i in beyond))

# %% [markdown]
# Where do this model's test features lie? What matters is the distance to the nearest centre of
# *another* class (the scores that must not underflow):


# %%
def widths_to_nearest_other_class(model, x):
    """w = d^2 / 2 sigma^2 from each image's features to the nearest centre of another class than
    the predicted one, ``[N]``."""
    with torch.no_grad():
        w = -model.head.log_kernel(model.features(x))
        predicted = model.head.centre_labels[w.argmin(dim=1)]
        same = model.head.centre_labels[None, :] == predicted[:, None]
        return torch.where(same, float("inf"), w).min(dim=1).values


def pgd_views(model, eps):
    """PGD-20 (cross-entropy) on the paper's scores, and PGD-20 with cross-entropy and with the
    margin loss on the log-domain scores: ``{name: accuracy}``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # class_scores warns about the underflow shown here
        paper = evaluate_robustness(PaperScores(model), test.x, test.y, eps=(eps,), attacks=("pgd-20",),
                                    seed=SEED, progress=False)
    logs = evaluate_robustness(model, test.x, test.y, eps=(eps,), attacks=("pgd-20", "pgd-20-margin"),
                               seed=SEED, progress=False)
    return {"paper scores, CE": paper.results[eps]["PGD-20"],
            "log-domain scores, CE": logs.results[eps]["PGD-20"],
            "log-domain scores, margin": logs.results[eps]["PGD-20-margin"]}


w_other = widths_to_nearest_other_class(model, test.x)
print(f"widths to the nearest other-class centre: median {float(w_other.median()):.1f}, "
      f"beyond 104 for {100 * float((w_other > 104).float().mean()):.1f}% of the test images")
as_trained = pgd_views(model, EPS_MASKING)
for name, accuracy in as_trained.items():
    print(f"PGD-20 at eps {EPS_MASKING} on the {name}: {format_accuracy(accuracy, len(test.y))}")
expect(float(w_other.median()) < 87, "this quick model keeps the other classes' scores representable",
       f"median {float(w_other.median()):.1f} widths < 87")
expect(max(as_trained.values()) - min(as_trained.values()) < 0.05, "so here every view of the attack agrees",
       ", ".join(f"{100 * v:.1f}%" for v in as_trained.values()))

# %% [markdown]
# This small model's clusters are only a few dozen widths apart, so no score underflows and the
# official attack works. The paper's CIFAR-10 model (512-d features, margin $\alpha = 12.5$
# variances, 90 epochs) was evaluated where it does not: RobustBench measured **74.04 %**
# reported and **0.03 %** under AutoAttack.
#
# We can put our model in that regime without changing a single decision: divide the cluster
# variance $\sigma^2$ by `TIGHTER`. Every distance in widths grows by that factor, the nearest
# centre stays the nearest (so the hard rule and, here, the soft vote decide exactly as before),
# and the model's true robustness cannot change. Only the scores' *scale* changes:

# %%
tight = copy.deepcopy(model)
tight.head.variance /= TIGHTER
with torch.no_grad():
    same_decisions = float((tight(test.x).argmax(1) == model(test.x).argmax(1)).float().mean())
w_tight = widths_to_nearest_other_class(tight, test.x)
print(f"sigma^2 / {TIGHTER}: same predictions on {100 * same_decisions:.1f}% of the test images; "
      f"widths to the nearest other-class centre: median {float(w_tight.median()):.1f}, "
      f"beyond 104 for {100 * float((w_tight > 104).float().mean()):.1f}%")
tightened = pgd_views(tight, EPS_MASKING)
print(f"{'PGD-20 at eps ' + str(EPS_MASKING):<40}{'as trained':>12}{'sigma^2 / ' + str(TIGHTER):>14}")
for name in as_trained:
    print(f"{name:<40}{100 * as_trained[name]:>11.1f}%{100 * tightened[name]:>13.1f}%")
expect(same_decisions == 1.0, "dividing sigma^2 changes no prediction", f"{100 * same_decisions:.1f}% identical")
expect(tightened["paper scores, CE"] > as_trained["paper scores, CE"] + 0.3,
       "the official attack now reports a robust model",
       f"{100 * as_trained['paper scores, CE']:.1f}% -> {100 * tightened['paper scores, CE']:.1f}%")
expect(abs(tightened["log-domain scores, margin"] - as_trained["log-domain scores, margin"]) < 0.05,
       "the margin loss on the log-domain scores still measures the same model",
       f"{100 * as_trained['log-domain scores, margin']:.1f}% and {100 * tightened['log-domain scores, margin']:.1f}%")

# %% [markdown]
# Read the table row by row:
#
# * **paper scores, CE** (the official evaluation): the exact zeros stop PGD, and the same
#   decisions are reported as robust.
# * **log-domain scores, CE**: robustviz's model returns $\log S_c$, which never underflows, but
#   cross-entropy's gradient is $p_c - [c = y]$, and the softmax $p_c \approx e^{-\text{gap}}$
#   underflows for the same reason: cross-entropy saturates. (This is why Carlini and Wagner
#   attacked a margin.)
# * **log-domain scores, margin** $\log S_{\text{best other}} - \log S_y$: a difference of squared
#   distances, whose gradient has the size of the features whatever the scale. It measures the
#   model.
#
# The lesson holds for any model: attack the decision rule with losses whose gradients do not
# vanish (margin, DLR on log-domain scores) and check with AutoAttack. The attack ladder climbs
# from FGSM to AutoAttack (here its fast version, APGD-CE and APGD-T) on the model's own decision
# rule; *reported* is the PGD-20 accuracy, the *worst case over attacks* the per-sample minimum.
# On the tightened model:

# %% tags=["plot"]
report = ladder(tight, test, EPS_MASKING, level="quick", n=course.pick(100, 1000), seed=SEED, progress=False)
print(report.table())
viz.plot_ladder(report)

# %%
expect(report.worst_case < report.reported - 0.3, "the ladder exposes the masking",
       f"reported {100 * report.reported:.1f}%, worst case over attacks {100 * report.worst_case:.1f}%")

# %% [markdown]
# ## Exercises
#
# 1. **Soft vote versus hard rule.** On how many test images do the soft top-$L$ vote
#    (`model(x).argmax(1)`) and the hard nearest-centre rule (`model.head.nearest_class(z)`)
#    disagree? Why does the certificate only cover the hard rule?
# 2. **A lower bound is no certificate.** Estimate $L_f$ from PGD pairs as
#    $\max \|f(x') - f(x)\|_2 / \|x' - x\|_2$. Why can this estimate not be used in $R(x)$?
# 3. **How tight is too tight?** Repeat section 4 with `TIGHTER` = 2 and 4. From which factor on
#    does the official attack over-report, and how does that relate to the widths printed?

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
with torch.no_grad():
    z = model.features(test.x)
    soft, hard = model(test.x).argmax(1), model.head.nearest_class(z)
print(f"soft and hard rules disagree on {int((soft != hard).sum())} of {len(soft)} test images")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** The certificate's argument is about which centre is nearest; the soft vote also
# depends on the other $L - 1$ centres' distances, so it can change without the nearest centre
# changing. When the two rules agree on every image (as often here) the certificate still only
# speaks about the hard rule.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
xs, ys = test.x[:200], test.y[:200]
ratio = (features_of(model, x_adv[:200]) - features_of(model, xs)).norm(dim=1) / (x_adv[:200] - xs).flatten(1).norm(dim=1)
print(f"largest observed ratio ||f(x') - f(x)|| / ||x' - x||: {float(ratio.max()):.2f}")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** Any observed ratio is a *lower* bound of $L_f$. Dividing by a number smaller than
# $L_f$ makes $R(x)$ larger than it really is: the "certificate" would certify points that can be
# attacked.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
for factor in (2, 4):
    scaled = copy.deepcopy(model)
    scaled.head.variance /= factor
    views = pgd_views(scaled, EPS_MASKING)
    w = widths_to_nearest_other_class(scaled, test.x)
    print(f"sigma^2 / {factor}: median width {float(w.median()):.0f}, beyond 104 for "
          f"{100 * float((w > 104).float().mean()):.0f}%; paper scores {100 * views['paper scores, CE']:.1f}%, "
          f"margin {100 * views['log-domain scores, margin']:.1f}%")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** The official attack over-reports roughly for the images whose nearest other-class
# centre is beyond about 87-104 widths: the fraction printed next to each factor is close to the
# fraction of images the paper-score attack can no longer move.

# %% [markdown]
# ## Self-check
#
# 1. Why does $e^{-w}$ in float32 become exactly 0, and from which $w$ on?
# 2. A model's PGD accuracy rises from 1 % to 98 % after a change that leaves every prediction
#    unchanged. What do you conclude?
# 3. Why does the margin loss not suffer from the underflow that stops cross-entropy?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: the smallest positive float32 (subnormal) is about $1.4 \cdot 10^{-45} = e^{-103.3}$;
# below it the result rounds to 0 (normal numbers already end at $e^{-87.3}$). 2: that the attack,
# not the model, changed: the robustness is masked; climb the ladder. 3: it is a difference of
# log-scores (here of squared distances), computed without any exponential, so its gradient keeps
# the size of the features.

# %% [markdown]
# ## Summary
#
# * ClusTR learns compact, well separated clusters (Magnet loss) and classifies by the nearest
#   clusters; for the hard nearest-centre rule a geometric certificate exists, in feature units.
# * Its reported PGD robustness came from attacking exponentially small scores: gradient
#   masking. Making the clusters tighter relative to their spacing reproduces it here without
#   changing a single prediction; a margin loss on log-domain scores and AutoAttack remove it
#   (RobustBench on the paper's model: 74.04 % reported, 0.03 % AutoAttack on CIFAR-10).
# * Well-clustered features are not the same as robust features.
#
# Next: [06 · Compactness (ADR)](06_compactness.ipynb).
