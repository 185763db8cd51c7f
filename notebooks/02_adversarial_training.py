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
# # 02 · Adversarial training: PGD-AT, FGSM-AT, FGSM-RS
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/02_adversarial_training.ipynb)
#
# **Learning objectives.** After this notebook you can
#
# 1. write adversarial training as a min-max problem and say how PGD-AT, FGSM-AT and FGSM-RS
#    approximate its inner maximisation;
# 2. watch *catastrophic overfitting* happen during training: the held-out PGD accuracy of
#    FGSM training falls towards zero while its accuracy on its own FGSM examples climbs;
# 3. tell real robustness from the single-step kind on an accuracy-vs-eps plot and on the loss
#    along the FGSM direction.

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
from robustviz import methods, runs, viz
from robustviz.evaluate import evaluate_robustness

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(300, 2000))

# %% [markdown]
# ## 1. The min-max problem
#
# Adversarial training (Madry et al. 2018, [arXiv:1706.06083](https://arxiv.org/abs/1706.06083))
# trains on the worst case inside the ball:
#
# $$\min_\theta\ \mathbb{E}_{(x, y)}\Big[\max_{\|\delta\|_\infty \le \epsilon} L\big(f_\theta(x + \delta), y\big)\Big].$$
#
# The three recipes differ only in how they approximate the inner max, i.e. in the attack
# crafted for every training batch:
#
# | recipe | inner maximisation | cost per batch |
# |---|---|---|
# | `pgd_at` | PGD-$k$ from a random start (Madry et al.) | $k + 1$ forward/backward passes |
# | `fgsm_at` | one FGSM step of size $\epsilon$ from $x$ (Goodfellow et al. 2015, [arXiv:1412.6572](https://arxiv.org/abs/1412.6572)) | 2 |
# | `fgsm_rs` | $\delta_0 \sim U[-\epsilon, \epsilon]^n$, then one step of $1.25\,\epsilon$, projected (Wong, Rice & Kolter 2020, [arXiv:2001.03994](https://arxiv.org/abs/2001.03994)) | 2 |
#
# FGSM-RS: $\delta = \Pi_{B_\epsilon}\big(\delta_0 + 1.25\,\epsilon\,\operatorname{sign}(\nabla_x L(f(x + \delta_0), y))\big)$.
# The quick profile's settings for each (steps, step size, epochs):

# %%
for key in ("pgd_at", "fgsm_at", "fgsm_rs"):
    config = methods.get(key).config(bundle.family, course.profile, **course.overrides)
    print(f"{key:<8} epochs {config.epochs}, {config.method_kwargs}")

# %% [markdown]
# ## 2. Train, and watch the held-out PGD accuracy
#
# After every epoch `fit` measures the clean and PGD-10 accuracy on a held-out batch that is
# never trained on (`val_pgd` in the progress bar). Watch it for `fgsm_at`: it falls towards
# zero while the training accuracy (`acc`, measured on the FGSM examples the model trains on)
# climbs. The model gets better at the single-step examples it makes for itself and worse at
# real ones. When the held-out PGD accuracy falls more than 0.2 below its best, the bar also
# prints `CO!`, the *catastrophic-overfitting* alarm. In this short run FGSM training never
# reaches a high PGD accuracy to fall from, so the alarm may stay silent while the curves show
# the failure; in longer runs (FGSM training on CIFAR-10, say) the PGD accuracy typically rises
# for many epochs and then collapses within one or two, which is what the alarm is for.

# %%
trained_runs = {key: course.train(key) for key in ("ce", "pgd_at", "fgsm_at", "fgsm_rs")}
models = {key: model for key, (model, _) in trained_runs.items()}
histories = {key: history for key, (_, history) in trained_runs.items() if key != "ce"}
for key, history in histories.items():
    print(f"{key:<8} held-out PGD accuracy per epoch:", [f"{v:.2f}" for v in history["val_pgd_acc"]],
          "| CO alarm:", any(history["co_alarm"]))

# %% [markdown]
# The training curves: losses (left), accuracies (middle; `train_acc` is measured on the
# training-time adversarial examples, so for FGSM training it is the accuracy under FGSM),
# learning rate (right). Red vertical lines mark epochs where the alarm fired.

# %% tags=["plot"]
viz.plot_training_curves(histories)

# %% [markdown]
# ## 3. Accuracy against eps: FGSM and PGD
#
# A model that is robust to FGSM but not to PGD has not become robust: it has learned to make
# the single step useless. Solid lines are FGSM, dashed lines PGD-20.

# %%
reports = {key: evaluate_robustness(model, test.x, test.y, eps=(0.1, 0.2, EPS), attacks=("fgsm", "pgd-20"),
                                    seed=SEED, progress=False)
           for key, model in models.items()}
for key, report in reports.items():
    print(report.table(key), "\n")

# %% tags=["plot"]
viz.plot_accuracy_vs_eps(reports)

# %% [markdown]
# ## 4. The signature in the loss
#
# Along the FGSM direction the loss of a PGD-trained model rises smoothly. A model whose FGSM
# accuracy is far above its PGD accuracy typically shows a loss that rises, then *falls* before
# $\epsilon$: the gradient at $x$ no longer says where the loss is high inside the ball.

# %% tags=["plot"]
viz.plot_loss_along_fgsm(models["pgd_at"], test.x[:50], test.y[:50], eps=EPS, title="pgd_at")

# %% tags=["plot"]
viz.plot_loss_along_fgsm(models["fgsm_at"], test.x[:50], test.y[:50], eps=EPS, title="fgsm_at")

# %% [markdown]
# ## Exercises
#
# 1. **Rollback.** `fit` can restore the weights of the epoch with the best held-out PGD
#    accuracy at the end of training (`rollback=True`, the early stopping of Rice et al. 2020).
#    Train `fgsm_at` with it and compare its PGD-20 accuracy at $\epsilon = 0.3$.
# 2. **The random start matters.** Train `fgsm_rs` *without* its random start
#    (`method_kwargs=dict(random_start=False)`), keeping the $1.25\,\epsilon$ step. What happens?
# 3. **Cost.** From the histories, how many seconds per epoch did each recipe take? How does the
#    ratio compare with the number of forward/backward passes in the table of section 1?

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
rolled, rolled_history = course.train("fgsm_at", rollback=True, progress=False)
print("rolled back to epoch", rolled_history.last.get("rolled_back_to_epoch", "(the last one was the best)"))
print(evaluate_robustness(rolled, test.x, test.y, eps=(EPS,), attacks=("fgsm", "pgd-20"), progress=False).table())

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
no_start, no_start_history = course.train("fgsm_rs", method_kwargs=dict(random_start=False), progress=False)
print("held-out PGD accuracy per epoch:", [f"{v:.2f}" for v in no_start_history["val_pgd_acc"]])
print(evaluate_robustness(no_start, test.x, test.y, eps=(EPS,), attacks=("fgsm", "pgd-20"), progress=False).table())
# Without the random start a 1.25 eps step from x is clipped back to the ball's corner: it is
# FGSM training again, and it overfits in the same way.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
for key, (_, history) in trained_runs.items():
    per_epoch = sum(history["seconds"]) / len(history)
    print(f"{key:<8} {per_epoch:6.1f} s per epoch (includes the held-out monitoring)")

# %% [markdown]
# ## Summary
#
# * Adversarial training minimises the loss at the attack's point; how good the model becomes
#   depends on how good that attack is.
# * FGSM training can *catastrophically overfit*: the model learns to make the single step weak,
#   FGSM accuracy stays high and PGD accuracy collapses. The held-out PGD monitor catches it live.
# * A random start (FGSM-RS) makes single-step training much more reliable, but it is not a
#   guarantee: always evaluate with multi-step attacks (and more, notebook 08).
#
# Next: [03 · Complement entropy](03_complement_entropy.ipynb).
