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
# # 01 · Attacks: FGSM and PGD on a standard model
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/01_attacks.ipynb)
#
# **Learning objectives.** After this notebook you can
#
# 1. write down FGSM and PGD and say which optimisation problem each one approximates;
# 2. see why a single gradient step is a *linearisation*, on the loss along the FGSM direction
#    and on a 2-D slice of the loss landscape;
# 3. read an accuracy-versus-eps curve and explain why PGD lies below FGSM;
# 4. watch adversarial examples move through the feature space of a standard model.

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
EPS = 0.3  # the attack budget in [0, 1] pixel units (MNIST's conventional L-inf budget)

# %%
# %matplotlib inline
import torch

from robustviz import runs, viz
from robustviz.attacks import fgsm, pgd
from robustviz.evaluate import evaluate_robustness, predict

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle)
model, _ = course.train("ce")  # the standard model of notebook 00 (trained now if it is not cached)

# %% [markdown]
# ## 1. The attacker's problem
#
# For a classifier $f$ with loss $L$ (cross-entropy), the strongest $L_\infty$ attack within
# budget $\epsilon$ solves
#
# $$\max_{\|\delta\|_\infty \le \epsilon,\; x + \delta \in [0, 1]^n} L\big(f(x + \delta), y\big).$$
#
# **FGSM** (Goodfellow, Shlens & Szegedy 2015, [arXiv:1412.6572](https://arxiv.org/abs/1412.6572))
# replaces $L$ by its first-order Taylor model $L(x) + \nabla_x L^\top \delta$, whose maximiser
# over the $L_\infty$ ball is a single signed step:
#
# $$x_{\text{FGSM}} = \operatorname{clip}_{[0,1]}\big(x + \epsilon\, \operatorname{sign}(\nabla_x L(f(x), y))\big).$$
#
# **PGD** (Madry et al. 2018, [arXiv:1706.06083](https://arxiv.org/abs/1706.06083)) takes many
# small signed steps from a random start and projects back onto the ball after each one:
#
# $$x^{0} = x + \eta,\ \eta \sim U[-\epsilon, \epsilon]^n, \qquad
# x^{t+1} = \Pi_{B_\epsilon(x) \cap [0,1]^n}\big(x^{t} + \alpha\, \operatorname{sign}(\nabla_x L(f(x^{t}), y))\big).$$
#
# When the loss is close to linear inside the ball the two agree; when it is curved, only the
# iterative attack finds the worst case.

# %%
x, y = test.x[:8], test.y[:8]
x_fgsm = fgsm(model, x, y, eps=EPS)
x_pgd = pgd(model, x, y, eps=EPS, steps=20, seed=SEED)
for name, images in [("clean", x), ("FGSM", x_fgsm), ("PGD-20", x_pgd)]:
    print(f"{name:>7}: predicted {predict(model, images).tolist()}  (true {y.tolist()})")

# %% tags=["plot"]
rows = {"clean": x, "FGSM": x_fgsm, "PGD-20": x_pgd}
viz.plot_image_grid(rows, {name: predict(model, images) for name, images in rows.items()})

# %% [markdown]
# ## 2. Is the loss linear inside the ball?
#
# FGSM is exact only for a linear loss. Walk from $x$ along $\operatorname{sign}(\nabla_x L)$
# and record the loss: each thin line is one image, the black line their mean, the dashed line
# marks $\epsilon$. For a standard model the loss keeps rising, fast.

# %% tags=["plot"]
viz.plot_loss_along_fgsm(model, test.x[:50], test.y[:50], eps=EPS)

# %% [markdown]
# A 2-D slice: the loss at $x + a\,\epsilon\,\operatorname{sign}(\nabla_x L) + b\,\epsilon\, r$,
# with $r$ a random sign vector. The dashed diamond is the $L_\infty$ ball of radius $\epsilon$
# in these coordinates. The loss grows steeply along the gradient direction and barely changes
# along the random one: random noise of the same size is a much weaker attack.

# %% tags=["plot"]
viz.plot_loss_landscape(model, test.x[0], test.y[0], eps=EPS, resolution=course.pick(15, 31))

# %% [markdown]
# ## 3. Accuracy against eps
#
# `evaluate_robustness` runs each attack at each budget on the test subset. *Robust accuracy*
# counts a sample only if it is classified correctly both clean and attacked, so it never
# exceeds the clean accuracy.

# %%
budgets = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
report = evaluate_robustness(model, test.x, test.y, eps=budgets, attacks=("fgsm", "pgd-20"), seed=SEED)
print(report.table(f"ce on {bundle.name}, {report.n} test images"))

# %% tags=["plot"]
viz.plot_accuracy_vs_eps({"ce": report})

# %% [markdown]
# ## 4. Where the attack moves the features
#
# The same picture as in notebook 00, now under PGD-20: at $\epsilon = 0.2$ most adversarial
# features (crosses) land in another class's region of the map.

# %% tags=["plot"]
feats = viz.extract(model, test, attack="pgd-20", eps=0.2, n=course.pick(300, 1000), seed=SEED)
viz.plot_embedding(feats, method="pca", classes=bundle.classes)

# %% [markdown]
# ## Exercises
#
# 1. **Targeted PGD.** Make every one of 100 test images be classified as a "3"
#    (`pgd(..., target=...)` minimises the loss towards the target). What fraction succeeds at
#    $\epsilon = 0.2$? And at $0.3$?
# 2. **Step count.** How much do more PGD steps help at $\epsilon = 0.15$? Compare `"pgd-5"`,
#    `"pgd-20"` and `"pgd-50x2"` (2 random restarts) with `evaluate_robustness`.
# 3. **Another norm.** Attack with PGD in the $L_2$ ball (`norm="l2"`) at budgets 0.5, 1 and 2 (2.0 is
#    the usual $L_2$ budget for MNIST).
#    Compare with the largest $L_2$ norm an $L_\infty$ perturbation of 0.3 can have
#    ($\|\delta\|_2 \le \sqrt{n}\,\|\delta\|_\infty$ with $n = 784$).

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
xs, ys = test.x[:100], test.y[:100]
target = torch.full_like(ys, 3)
for eps in (0.2, 0.3):
    hit = predict(model, pgd(model, xs, ys, eps=eps, steps=40, target=target, seed=SEED)) == 3
    print(f"eps {eps}: {100 * hit.float().mean():.0f}% classified as '3' (the 3s themselves count too)")

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
steps = evaluate_robustness(model, test.x[:200], test.y[:200], eps=(0.15,), attacks=("pgd-5", "pgd-20", "pgd-50x2"),
                            seed=SEED, progress=False)
print(steps.table())
# More steps and restarts lower the accuracy a little more: an evaluation should keep adding
# attack strength until the number stops moving (notebook 08).

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
xs, ys = test.x[:200], test.y[:200]
for eps_l2 in (0.5, 1.0, 2.0):
    acc = (predict(model, pgd(model, xs, ys, eps=eps_l2, norm="l2", steps=20, seed=SEED)) == ys).float().mean()
    print(f"L2 eps {eps_l2}: accuracy {100 * acc:.1f}%")
# The L-inf ball of radius 0.3 contains perturbations of L2 norm up to 0.3 * sqrt(784) = 8.4,
# yet L2 budgets far smaller than that already break part of the test set: an L2 attack can put
# the whole change on the few pixels that matter, where L-inf spreads it over every pixel.

# %% [markdown]
# ## Summary
#
# * FGSM is the exact maximiser of the *linearised* loss; PGD iterates small projected steps and
#   finds the worst case when the loss is curved.
# * For a standard model the loss rises steeply along the gradient direction: at
#   $\epsilon = 0.3$ PGD leaves essentially nothing correct.
# * Accuracy-vs-eps curves are the basic picture of robustness; the attack used must be named
#   next to every number.
#
# Next: [02 · Adversarial training](02_adversarial_training.ipynb), training on these attacks.
