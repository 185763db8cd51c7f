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
# **Prerequisites:** notebook 01 (FGSM, PGD, accuracy against eps).
# **Student time:** about 50 minutes, plus about 3 minutes of training on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. write adversarial training as a min-max problem and say how PGD-AT, FGSM-AT and FGSM-RS
#    approximate its inner maximisation;
# 2. watch *catastrophic overfitting* happen during training: the held-out PGD accuracy of
#    FGSM training stays near zero while its accuracy on its own FGSM examples climbs;
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
PROFILE = "quick"  # "quick": CPU, minutes; "lab": one GPU, ~10 min per recipe; "full": the papers' settings
SEED = 0
DATASET = "mnist-mini"
N_TRAIN = None  # None: every training image; a number trains on a subset
EPS = 0.3

# %%
# %matplotlib inline
from robustviz import methods, viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.evaluate import evaluate_robustness, loss_along_fgsm
from robustviz.evaluate.intervals import format_accuracy

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(500, 2000))

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
    config = methods.get(key).config(bundle.family, course.profile)
    print(f"{key:<8} epochs {config.epochs}, {config.method_kwargs}")

# %% [markdown]
# ## 2. Train, and watch the held-out PGD accuracy
#
# After every epoch `fit` measures the clean and PGD-10 accuracy on a held-out batch that is
# never trained on (`val_pgd` in the progress bar). Watch it for `fgsm_at`: it stays near zero
# while the training accuracy (`acc`, measured on the FGSM examples the model trains on) climbs.
# The model gets better at the single-step examples it makes for itself, not at real ones. When
# the held-out PGD accuracy falls more than 0.2 below its best, the bar also prints `CO!`, the
# *catastrophic-overfitting* alarm. In this short run at MNIST's large budget FGSM training never
# reaches a high PGD accuracy to fall from, so the alarm stays silent while the curves show the
# failure; in longer runs (FGSM training on CIFAR-10, say) the PGD accuracy typically rises for
# many epochs and then collapses within one or two, which is what the alarm is for.

# %%
trained_runs = {key: course.train(key) for key in ("ce", "pgd_at", "fgsm_at", "fgsm_rs")}
models = {key: model for key, (model, _) in trained_runs.items()}
histories = {key: history for key, (_, history) in trained_runs.items() if key != "ce"}
for key, history in histories.items():
    print(f"{key:<8} held-out PGD accuracy per epoch:", [f"{v:.2f}" for v in history["val_pgd_acc"]],
          "| CO alarm:", any(history["co_alarm"]))
fgsm_train = histories["fgsm_at"]["train_acc"]
expect(max(histories["fgsm_at"]["val_pgd_acc"]) < 0.1 and fgsm_train[-1] > max(0.7, fgsm_train[0]),
       "FGSM-AT never becomes robust on held-out data while it learns to classify its own FGSM examples",
       f"held-out PGD-10 at most {100 * max(histories['fgsm_at']['val_pgd_acc']):.0f} %, training accuracy on "
       f"FGSM examples {100 * fgsm_train[0]:.0f} % in the first epoch, {100 * fgsm_train[-1]:.0f} % in the last")

# %% [markdown]
# The training curves, one panel per quantity: the loss, the training accuracy (measured on the
# training-time adversarial examples, so for FGSM training it is the accuracy under FGSM), and the
# held-out clean and PGD accuracy. Dotted vertical lines would mark epochs where the alarm fired.

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
n = reports["ce"].n
acc = {key: {eps: report.results[eps] for eps in (0.1, 0.2, EPS)} for key, report in reports.items()}

# %% tags=["plot"]
viz.plot_accuracy_vs_eps(reports)

# %%
expect(acc["pgd_at"][EPS]["PGD-20"] > 0.6, f"PGD-AT is robust at eps = {EPS}",
       "PGD-20 " + format_accuracy(acc["pgd_at"][EPS]["PGD-20"], n))
expect(acc["fgsm_at"][EPS]["FGSM"] > 0.5 and acc["fgsm_at"][EPS]["PGD-20"] < 0.1,
       "FGSM-AT is robust to FGSM only", f"FGSM {100 * acc['fgsm_at'][EPS]['FGSM']:.1f} %, PGD-20 "
       f"{format_accuracy(acc['fgsm_at'][EPS]['PGD-20'], n)}")
expect(acc["fgsm_rs"][EPS]["PGD-20"] < 0.3, f"on this budget FGSM-RS overfits as well at eps = {EPS}",
       f"PGD-20 {format_accuracy(acc['fgsm_rs'][EPS]['PGD-20'], n)}; FGSM at 0.2 / 0.3: "
       f"{100 * acc['fgsm_rs'][0.2]['FGSM']:.1f} / {100 * acc['fgsm_rs'][EPS]['FGSM']:.1f} %")
expect(abs(acc["fgsm_rs"][0.1]["PGD-20"] - acc["pgd_at"][0.1]["PGD-20"]) < 0.03,
       "at eps = 0.1 FGSM-RS is as robust as PGD-AT", f"PGD-20 at 0.1: fgsm_rs {100 * acc['fgsm_rs'][0.1]['PGD-20']:.1f}"
       f" %, pgd_at {100 * acc['pgd_at'][0.1]['PGD-20']:.1f} %")

# %% [markdown]
# **FGSM-RS overfits too, here.** Its random start helps at small budgets (at $\epsilon = 0.1$ it
# matches PGD-AT), but at MNIST's $\epsilon = 0.3$ its PGD-20 accuracy collapses, and its FGSM
# accuracy *rises* from $\epsilon = 0.2$ to $0.3$: the signature of a loss bent so that a larger
# step lands somewhere harmless. Measured on this budget (same data and seed; the notes of
# `docs/results-quick.md`): a smaller step ($\alpha = \epsilon$ instead of $1.25\,\epsilon$) leaves
# 11 % PGD-20, $\alpha = 0.2$ 20 %, an eps warm-up over the first 30 % of training 7 %. Wong et al. trained 10 epochs
# with a cyclic learning rate for MNIST at this budget, and Andriushchenko & Flammarion (2020)
# show that FGSM-RS fails at large $\epsilon$ however the step is set: the remedies are more
# attack steps (PGD-AT), a regulariser that keeps the loss locally linear (GradAlign; the SAT
# regularizers of notebook 07), or stopping at the best held-out epoch before the collapse.
# %% [markdown]
# ## 4. The signature in the loss
#
# Along the FGSM direction the loss of a PGD-trained model rises smoothly for almost every image.
# For FGSM-AT it rises little on average (the mean loss at $\epsilon$ stays below 1 while PGD breaks
# almost every image) and for many images it falls somewhere before $\epsilon$: the gradient at $x$
# no longer says where the loss is high inside the ball.

# %% tags=["plot"]
viz.plot_loss_along_fgsm(models["pgd_at"], test.x[:50], test.y[:50], eps=EPS, title="pgd_at")

# %% tags=["plot"]
viz.plot_loss_along_fgsm(models["fgsm_at"], test.x[:50], test.y[:50], eps=EPS, title="fgsm_at")

# %%
def loss_curves(key: str):
    """The cross-entropy along the FGSM direction of 100 test images, ``[100, 11]``."""
    return loss_along_fgsm(models[key], test.x[:100], test.y[:100], eps=EPS)[1]


def non_monotone_share(curves) -> float:
    """Share of curves that drop by more than 1 % of their range somewhere before eps."""
    spread = (curves.max(1).values - curves.min(1).values).clamp_min(1e-12)
    return float(((curves[:, :-1] - curves[:, 1:]).clamp_min(0).max(1).values > 0.01 * spread).float().mean())


curves = {key: loss_curves(key) for key in ("pgd_at", "fgsm_at")}
shares = {key: non_monotone_share(c) for key, c in curves.items()}
expect(shares["fgsm_at"] > 3 * shares["pgd_at"], "FGSM-AT's loss falls somewhere along the FGSM direction for far "
       "more images", f"{100 * shares['fgsm_at']:.0f} % against {100 * shares['pgd_at']:.0f} % for PGD-AT")
expect(float(curves["fgsm_at"][:, -1].mean()) < 1.0, "and at eps its mean loss is still small: FGSM finds little",
       f"mean cross-entropy at eps: fgsm_at {float(curves['fgsm_at'][:, -1].mean()):.2f}")

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
print("held-out PGD accuracy per epoch:", [f"{v:.2f}" for v in rolled_history["val_pgd_acc"]])
print("rolled back to epoch", rolled_history.last.get("rolled_back_to_epoch", "(the last one was the best)"))
print(evaluate_robustness(rolled, test.x, test.y, eps=(EPS,), attacks=("fgsm", "pgd-20"), progress=False).table())

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** Rollback keeps the epoch with the best held-out PGD accuracy, but here that accuracy
# never rose above a few percent: the best epoch is an early, less trained one, slightly less
# accurate and no more robust. Early stopping rescues a run that *was* robust before it collapsed
# (the typical CIFAR-10 picture); it cannot give what was never there.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
no_start, no_start_history = course.train("fgsm_rs", method_kwargs=dict(random_start=False), progress=False)
print("held-out PGD accuracy per epoch:", [f"{v:.2f}" for v in no_start_history["val_pgd_acc"]])
print(evaluate_robustness(no_start, test.x, test.y, eps=(EPS,), attacks=("fgsm", "pgd-20"), progress=False).table())

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** Without the random start a $1.25\,\epsilon$ step from $x$ is clipped back to the
# ball's corner $x + \epsilon\,\mathrm{sign}(\nabla_x L)$: exactly FGSM. The run is FGSM-AT again,
# to the last digit (compare with `fgsm_at` above), and it overfits the same way.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
for key, (_, history) in trained_runs.items():
    per_epoch = sum(history["seconds"]) / len(history)
    print(f"{key:<8} {per_epoch:6.1f} s per epoch (includes the held-out monitoring)")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** PGD-AT with $k = 5$ steps costs about six forward/backward passes per batch, the
# single-step recipes two, standard training one; the measured seconds follow that ratio only
# roughly, because every epoch also pays the same held-out monitoring (a PGD-10 attack on 500
# images) and because a backward pass to the input alone is cheaper than a full one.

# %% [markdown]
# ## Self-check
#
# 1. Why does FGSM training without a random start, with a step of $1.25\,\epsilon$, give exactly
#    FGSM-AT?
# 2. What is the signature of catastrophic overfitting on an accuracy-versus-eps plot?
# 3. Why can the catastrophic-overfitting alarm stay silent in a run that has clearly failed?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: from $x$ the step is projected back onto the ball, i.e. onto the corner
# $x + \epsilon\,\mathrm{sign}(\nabla_x L)$. 2: FGSM accuracy far above PGD accuracy, sometimes
# *rising* with $\epsilon$. 3: it fires on a *fall* from a best value; a run that was never robust has
# nothing to fall from.

# %% [markdown]
# ## Summary
#
# * Adversarial training minimises the loss at the attack's point; how good the model becomes
#   depends on how good that attack is.
# * FGSM training can *catastrophically overfit*: the model learns to make the single step weak,
#   FGSM accuracy stays high and PGD accuracy collapses. The held-out PGD monitor catches it live.
# * A random start (FGSM-RS) helps at small budgets but is not a guarantee: on this budget it
#   overfits at $\epsilon = 0.3$ as well. Always evaluate with multi-step attacks (and more,
#   notebook 08).
#
# Next: [03 · Complement entropy](03_complement_entropy.ipynb).
