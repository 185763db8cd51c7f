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
# # 07 · Single-step adversarial training without pseudo-robustness: SAT-R1, R2, R3
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/07_single_step_regularizers.ipynb)
#
# **Learning objectives.** After this notebook you can
#
# 1. explain *pseudo-robustness*: how FGSM training can lower its loss by making its own
#    adversarial examples weak instead of becoming robust;
# 2. state the three SAT regularizers and the property of a robust model each one enforces;
# 3. run the gradient-masking diagnostics and read their flags for FGSM-AT, SAT-R1/R2/R3 and PGD-AT.

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
from robustviz.evaluate import diagnose, diagnoses_table, evaluate_robustness

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(300, 2000))

# %% [markdown]
# ## 1. Pseudo-robustness
#
# FGSM is the exact maximiser of the *linearised* loss over the ball. Single-step adversarial
# training can lower "the loss at the FGSM point" in two ways: honestly (make the loss flat over
# the whole ball) or cheaply (bend the loss so that the gradient at $x$ points somewhere useless;
# then the FGSM examples it trains on are weak). The cheap way gives *pseudo-robustness*: high
# accuracy under FGSM, little under multi-step attacks (Vivek & Babu 2020,
# [arXiv:2002.00614](https://arxiv.org/abs/2002.00614); "catastrophic overfitting" in Wong, Rice &
# Kolter 2020).
#
# The three regularizers (code: val-iisc/SAT-Rx) are each added to the FGSM-AT loss, with
# logits $f$ and the FGSM example $x^F$:
#
# $$\mathcal{L}_{\text{FGSM-AT}} = \frac1B\sum_{i=1}^{B} \mathrm{CE}\big(f(x_i^{F}), y_i\big), \qquad
# x^{F} = \operatorname{clip}_{[0,1]}\big(x + \epsilon\,\operatorname{sign}(\nabla_x \mathrm{CE}(f(x), y))\big).$$
#
# | | penalty | property of a robust model |
# |---|---|---|
# | SAT-R1 | $\lambda\,\big\|f(x_j^{F}) - f(\text{I-FGSM}_K(x_j))\big\|_2^2$ on one image $j$ per batch | single-step and multi-step adversaries agree |
# | SAT-R2 | $\lambda\,\frac1B\sum_i \big\|f(x_i^{F}) - f(x_i^{R})\big\|_2^2$, $x^R$ = FGSM from $x + \alpha\,\mathrm{sign}(n)$ | the FGSM result does not depend on a tiny random shift of the start |
# | SAT-R3 | $\mathrm{CE}_{\epsilon} + \lambda \max\!\big(0,\ \mathrm{CE}_{\epsilon_{lo}} - \tau\,\mathrm{CE}_{\epsilon}\big)$ on one FGSM ray | the loss keeps rising along the adversarial direction |
#
# MNIST settings: R1 $K = 10$, $\lambda = 0.2$; R2 $\alpha = 0.01$, $\lambda = 5$; R3 $\epsilon_{lo} = 0.1$,
# $\alpha = 0.01$, $\lambda = 1$, $\tau = 0.4$ (the authors' LeNet+ network).

# %%
keys = ("fgsm_at", "sat_r1", "sat_r2", "sat_r3", "pgd_at")
trained_runs = {key: course.train(key) for key in keys}
models = {key: model for key, (model, _) in trained_runs.items()}
surrogate, _ = course.train("ce")  # a standard model, for the transfer-attack diagnostic

# %% [markdown]
# ## 2. The training curves
#
# The held-out PGD accuracy per epoch (middle panel): red lines mark epochs where it fell more
# than 0.2 below its best, the catastrophic-overfitting alarm.

# %% tags=["plot"]
viz.plot_training_curves({key: history for key, (_, history) in trained_runs.items()})

# %% [markdown]
# ## 3. FGSM against PGD
#
# Pseudo-robustness shows as a wide gap between the FGSM (solid) and the PGD-20 (dashed) curve
# of the same model.

# %% tags=["plot"]
reports = {key: evaluate_robustness(model, test.x, test.y, eps=(0.1, 0.2, EPS), attacks=("fgsm", "pgd-20"),
                                    seed=SEED, progress=False)
           for key, model in models.items()}
viz.plot_accuracy_vs_eps(reports)

# %% [markdown]
# ## 4. The diagnostics
#
# `diagnose` measures the classic warning signs of gradient masking (Athalye, Carlini & Wagner
# 2018; Carlini et al. 2019) and raises a flag for each one beyond its threshold: FGSM above
# clean, single-step far above multi-step, a transfer attack from another model stronger than
# white-box PGD, accuracy not vanishing at $\epsilon = 0.5$, a non-monotone loss along the FGSM
# direction, low gradient alignment inside the ball, zero gradients, more PGD steps still helping.

# %%
diagnoses = {key: diagnose(model, test, EPS, n=course.pick(100, 1000), surrogate=surrogate, seed=SEED,
                          strong_attack=course.pick((50, 2), (100, 3)))  # (steps, restarts) of the strong PGD
             for key, model in models.items()}
display(Markdown(diagnoses_table(diagnoses)))

# %%
print(diagnoses["fgsm_at"])
print()
print(diagnoses["fgsm_at"].explain())

# %% [markdown]
# ## 5. The loss along the FGSM direction
#
# SAT-R3's property, seen directly: along $x + t\,\operatorname{sign}(\nabla_x L)$ the loss of a
# robust model rises steadily up to $\epsilon$; a pseudo-robust one can rise and fall.

# %% tags=["plot"]
for key in ("fgsm_at", "sat_r3"):
    display(viz.plot_loss_along_fgsm(models[key], test.x[:50], test.y[:50], eps=EPS, title=key))

# %% [markdown]
# ## Exercises
#
# 1. **Switch the regularizer off.** Train `sat_r2` with `method_kwargs=dict(lam=0.0)` (plain
#    FGSM-AT on the LeNet+ settings). Does it overfit?
# 2. **R3's condition.** When the hinge of SAT-R3 is active the objective is
#    $(1 - \lambda\tau)\,\mathrm{CE}_{\epsilon} + \lambda\,\mathrm{CE}_{\epsilon_{lo}}$. What goes wrong
#    if $\lambda\tau > 1$?
# 3. **The cost.** Compare the seconds per epoch of `fgsm_at`, the SAT recipes and `pgd_at` (in
#    each history). Note that the SAT recipes use another network (LeNet+) than `fgsm_at` and
#    `pgd_at` (the smallcnn).

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
plain, plain_history = course.train("sat_r2", method_kwargs=dict(lam=0.0), progress=False)
print("held-out PGD accuracy per epoch:", [f"{v:.2f}" for v in plain_history["val_pgd_acc"]])
print(evaluate_robustness(plain, test.x, test.y, eps=(EPS,), attacks=("fgsm", "pgd-20"), progress=False).table())

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Solution 2.** With $\lambda\tau > 1$ the coefficient of $\mathrm{CE}_{\epsilon}$ is negative:
# minimising the objective would *raise* the loss at the full budget, the opposite of training
# on adversarial examples. The hinge only makes sense with $\lambda\tau < 1$ (the MNIST setting
# has $\lambda\tau = 0.4$).

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
for key, (_, history) in trained_runs.items():
    print(f"{key:<8} {sum(history['seconds']) / len(history):6.1f} s per epoch, {len(history)} epochs")

# %% [markdown]
# ## Summary
#
# * Single-step adversarial training can reach a degenerate solution: weak self-made adversaries,
#   high FGSM accuracy, low PGD accuracy. The held-out PGD monitor and `diagnose` catch it.
# * SAT-R1/R2/R3 each penalise a property that pseudo-robust models violate (single-step vs
#   multi-step agreement, stability under a random shift, a monotone loss along the FGSM ray).
# * A diagnosis with no flag raised is not a proof of robustness; notebook 08 climbs the full
#   attack ladder.
#
# Next: [08 · Honest evaluation](08_honest_evaluation.ipynb).
