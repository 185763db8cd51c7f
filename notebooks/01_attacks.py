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
# **Prerequisites:** notebook 00 (the model contract, the course cache); gradients and the chain
# rule. **Student time:** about 45 minutes, plus a minute of computing on a laptop CPU.
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
PROFILE = "quick"  # "quick": CPU, minutes; "lab": one GPU, ~10 min per recipe; "full": the papers' settings
SEED = 0
DATASET = "mnist-mini"
N_TRAIN = None  # None: every training image; a number trains on a subset
EPS = 0.3  # the attack budget in [0, 1] pixel units (MNIST's conventional L-inf budget)

# %%
# %matplotlib inline
import numpy as np
import torch

from robustviz import viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.attacks import fgsm, pgd
from robustviz.evaluate import evaluate_robustness, loss_along_fgsm, predict
from robustviz.evaluate.intervals import format_accuracy
from robustviz.viz.landscape import loss_landscape

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
fooled = int((predict(model, x_pgd) != y).sum())
expect(fooled >= 6, "PGD-20 at eps 0.3 changes the prediction of (almost) every one of these 8 images",
       f"{fooled} of 8 misclassified")

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

# %%
t, curves = loss_along_fgsm(model, test.x[:50], test.y[:50], eps=EPS)
rising = float((curves[:, -1] > curves[:, 0]).float().mean())
expect(rising > 0.95, "along the FGSM direction the loss of the standard model rises, for (almost) every image",
       f"{100 * rising:.0f} % of 50 images end higher than they start; mean loss "
       f"{float(curves[:, 0].mean()):.2f} at x, {float(curves[:, -1].mean()):.1f} at eps")

# %% [markdown]
# A 2-D slice: the loss at $x + a\,\epsilon\,\operatorname{sign}(\nabla_x L) + b\,\epsilon\, r$,
# with $r$ a random sign vector. The dashed diamond is the $L_\infty$ ball of radius $\epsilon$
# in these coordinates. The loss grows steeply along the gradient direction and barely changes
# along the random one: random noise of the same size is a much weaker attack.

# %% tags=["plot"]
viz.plot_loss_landscape(model, test.x[0], test.y[0], eps=EPS, resolution=course.pick(15, 31))

# %%
coords, loss = loss_landscape(model, test.x[0], test.y[0], eps=EPS, resolution=course.pick(15, 31))
middle, edge = len(coords) // 2, int(np.argmin(np.abs(coords - 1.0)))  # a = 1 or b = 1: one eps away
along_gradient, along_random = loss[middle, edge] - loss[middle, middle], loss[edge, middle] - loss[middle, middle]
expect(along_gradient > 3 * max(along_random, 1e-3),
       "one eps along sign(grad) raises the loss far more than one eps along a random sign vector",
       f"+{along_gradient:.2f} against {along_random:+.2f} nats")

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
expect(all(report.results[b]["PGD-20"] <= report.results[b]["FGSM"] + 0.01 for b in budgets),
       "PGD-20 is at least as strong as FGSM at every budget",
       ", ".join(f"{b:g}: {100 * report.results[b]['PGD-20']:.0f} vs {100 * report.results[b]['FGSM']:.0f} %"
                 for b in budgets))
expect(report.results[EPS]["PGD-20"] < 0.05, f"at eps = {EPS} PGD-20 leaves essentially nothing correct",
       "PGD-20 accuracy " + format_accuracy(report.results[EPS]["PGD-20"], report.n))

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

# %%
wrong = float((feats.pred_adv != feats.labels).float().mean())
expect(wrong > 0.5, "under PGD-20 at eps 0.2 most adversarial features end in another class",
       f"{100 * wrong:.0f} % of {len(feats.labels)} mapped images misclassified")

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

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** A targeted attack has a harder job than an untargeted one (it must reach one
# particular class, not any wrong one), so it needs a larger budget for the same success: read
# the two percentages above. At $\epsilon = 0.3$ nearly every digit of a standard model can be
# turned into a "3".

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
steps = evaluate_robustness(model, test.x[:200], test.y[:200], eps=(0.15,), attacks=("pgd-5", "pgd-20", "pgd-50x2"),
                            seed=SEED, progress=False)
print(steps.table())

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** More steps and restarts can only lower the accuracy (every run keeps the
# per-sample worst case); on a standard model the drop from PGD-5 to PGD-20 is the largest and
# restarts add little. An evaluation keeps adding attack strength until the number stops moving
# (notebook 08); on 200 images, differences of one or two points are within the noise.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
xs, ys = test.x[:200], test.y[:200]
for eps_l2 in (0.5, 1.0, 2.0):
    acc = (predict(model, pgd(model, xs, ys, eps=eps_l2, norm="l2", steps=20, seed=SEED)) == ys).float().mean()
    print(f"L2 eps {eps_l2}: accuracy {100 * acc:.1f}%")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** The $L_\infty$ ball of radius 0.3 contains perturbations of $L_2$ norm up to
# $0.3\sqrt{784} = 8.4$, yet $L_2$ budgets four times smaller already break most of the test
# set: an $L_2$ attack can put the whole change on the few pixels that matter, where $L_\infty$
# spreads it over every pixel. The two threat models are different questions, and a model
# robust in one need not be robust in the other.

# %% [markdown]
# ## Self-check
#
# 1. Why is FGSM the *exact* maximiser of the linearised loss over the $L_\infty$ ball?
# 2. What does a loss that keeps rising along the FGSM direction tell you about FGSM's strength
#    on this model?
# 3. Why can robust accuracy never exceed clean accuracy in these tables?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: a linear function $g^\top\delta$ over $\|\delta\|_\infty \le \epsilon$ is maximised
# coordinate by coordinate, $\delta_i = \epsilon\,\mathrm{sign}(g_i)$. 2: the loss is close to
# linear inside the ball, so the first-order step already finds most of the worst case; FGSM and
# PGD then agree (both near zero at 0.3). 3: a sample counts as robust only if it is correct both
# clean and attacked.

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
