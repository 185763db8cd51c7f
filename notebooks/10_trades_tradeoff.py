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
# # 10 · The robustness-accuracy trade-off: TRADES
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/10_trades_tradeoff.ipynb)
#
# **Prerequisites:** notebook 02 (adversarial training); the KL divergence.
# **Student time:** about 35 minutes, plus about 3 minutes of training on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. write the TRADES objective and say what each of its two terms asks of the model;
# 2. measure the trade-off it controls: clean accuracy against robust accuracy as $\beta$ grows;
# 3. say why a single number ("72 % robust") hides a choice on that curve.

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
BETAS = (0.1, 1.0, 6.0)  # 6 is the paper's (and the recipe's) default

# %%
# %matplotlib inline
from robustviz import viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.evaluate import evaluate_robustness
from robustviz.evaluate.intervals import format_accuracy, wilson_interval

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(500, 2000))

# %% [markdown]
# ## 1. Two errors
#
# Zhang et al. (2019, "Theoretically principled trade-off between robustness and accuracy",
# [arXiv:1901.08573](https://arxiv.org/abs/1901.08573)) split the robust error of a classifier
# $f$ into the *natural* error (wrong on $x$ itself) and the *boundary* error (right on $x$, but a
# point of the ball around $x$ is classified differently). PGD-AT minimises the loss at the worst
# point of the ball, which mixes the two. **TRADES** keeps them apart:
#
# $$\mathcal{L}_{\text{TRADES}} = \underbrace{\mathrm{CE}\big(f(x), y\big)}_{\text{natural error}}
# \; + \; \beta\,\underbrace{\max_{\|x' - x\|_\infty \le \epsilon} \mathrm{KL}\big(p(x)\,\|\,p(x')\big)}_{\text{boundary error}},
# \qquad p = \mathrm{softmax}(f).$$
#
# The inner maximisation is a PGD attack on the KL divergence (it needs no label: it pushes the
# prediction away from the model's own clean prediction). $\beta$ sets the exchange rate between
# the two errors: a small $\beta$ is almost standard training, a large one gives up clean accuracy
# for a boundary far from the data. The paper uses $\beta = 6$.
#
# ## 2. Train TRADES at three values of $\beta$
#
# The recipe's quick settings (5 epochs, 5 KL-attack steps, an eps warm-up), only $\beta$ changes:

# %%
reports = {}
for beta in BETAS:
    changed = {} if beta == 6.0 else dict(method_kwargs=dict(beta=beta))  # beta 6: the recipe's own run
    model, _ = course.train("trades", **changed)
    reports[f"beta = {beta:g}"] = evaluate_robustness(model, test.x, test.y, eps=(0.1, 0.2, EPS),
                                                      attacks=("pgd-20",), seed=SEED, progress=False)
for name, report in reports.items():
    print(f"{name:<11} clean {format_accuracy(report.clean_acc, report.n)}, PGD-20 at {EPS}: "
          f"{format_accuracy(report.results[EPS]['PGD-20'], report.n)}")

# %% [markdown]
# ## 3. The trade-off curve
#
# Each point is one trained model: clean accuracy (up) against PGD-20 accuracy at $\epsilon = 0.3$
# (right), with 95 % Wilson intervals. Moving along the curve is choosing $\beta$.

# %% tags=["plot"]
viz.plot_tradeoff({name: (report.clean_acc, report.results[EPS]["PGD-20"], report.n)
                   for name, report in reports.items()}, robust_label=f"PGD-20 accuracy at eps = {EPS}")

# %%
names = list(reports)
clean = [reports[name].clean_acc for name in names]
robust = [reports[name].results[EPS]["PGD-20"] for name in names]
n = reports[names[0]].n
expect(robust[-1] > robust[0] + 0.1, f"a larger beta buys robustness: PGD-20 at eps = {EPS} rises from the "
       f"smallest to the largest beta", f"{100 * robust[0]:.1f} % -> {100 * robust[-1]:.1f} %")
expect(clean[-1] < clean[0], "and pays for it in clean accuracy", f"{100 * clean[0]:.1f} % -> {100 * clean[-1]:.1f} %")
expect(robust == sorted(robust), "the robustness rises at every step of beta",
       " -> ".join(f"{100 * r:.1f} %" for r in robust))
low, high = wilson_interval(robust[-1], n), wilson_interval(robust[0], n)
expect(low[0] > high[1], "the robustness gain is far outside the measurement noise",
       f"95 % intervals {100 * high[0]:.1f}-{100 * high[1]:.1f} % and {100 * low[0]:.1f}-{100 * low[1]:.1f} %")

# %% [markdown]
# The robustness moves a lot, the clean accuracy little: on MNIST the two errors are not strongly
# in conflict at this budget. On CIFAR-10 the price is much steeper: TRADES at $\beta = 6$ on a
# WideResNet-34-10 keeps 84.9 % clean accuracy (RobustBench), where standard training of the same
# network reaches about 95 %.
#
# ## 4. Against PGD-AT at the same budget
#
# PGD-AT is one point on a similar curve: the course's `pgd_at` model (trained on the same data for
# as many epochs with the same attack budget):

# %%
pgd_at, _ = course.train("pgd_at")
reports["pgd_at"] = evaluate_robustness(pgd_at, test.x, test.y, eps=(0.1, 0.2, EPS), attacks=("pgd-20",), seed=SEED,
                                        progress=False)
print(f"pgd_at      clean {format_accuracy(reports['pgd_at'].clean_acc, n)}, PGD-20 at {EPS}: "
      f"{format_accuracy(reports['pgd_at'].results[EPS]['PGD-20'], n)}")
trades_6 = reports[names[-1]].results[EPS]["PGD-20"]
pgd_at_robust = reports["pgd_at"].results[EPS]["PGD-20"]
expect(abs(trades_6 - pgd_at_robust) < 0.08, "TRADES at the paper's beta and PGD-AT end within a few points of "
       "each other", f"PGD-20: trades {100 * trades_6:.1f} %, pgd_at {100 * pgd_at_robust:.1f} %")

# %% tags=["plot"]
viz.plot_accuracy_vs_eps(reports)

# %% [markdown]
# ## Exercises
#
# 1. **Beyond the paper's beta.** Train TRADES with $\beta = 20$. Does robustness keep rising, and
#    at what price?
# 2. **Which error?** For the $\beta = 0.1$ model, how many test images are misclassified clean
#    (natural error) and how many are correct clean but broken by PGD-20 (boundary error)? And for
#    $\beta = 6$?
# 3. **One number hides a choice.** A paper reports "72 % robust accuracy". What else must it report
#    for you to compare it with another method?
#
# The solutions are in the collapsed cells below (click to expand).

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
strong, _ = course.train("trades", method_kwargs=dict(beta=20.0), progress=False)
strong_report = evaluate_robustness(strong, test.x, test.y, eps=(EPS,), attacks=("pgd-20",), seed=SEED, progress=False)
print(f"beta = 20: clean {format_accuracy(strong_report.clean_acc, n)}, PGD-20 "
      f"{format_accuracy(strong_report.results[EPS]['PGD-20'], n)}")
expect(abs(strong_report.results[EPS]["PGD-20"] - robust[-1]) < 0.05 and strong_report.clean_acc <= clean[-1],
       "past the paper's beta the robustness moves little and the clean accuracy does not come back",
       f"beta 6 -> 20: PGD-20 {100 * robust[-1]:.1f} -> {100 * strong_report.results[EPS]['PGD-20']:.1f} %, "
       f"clean {100 * clean[-1]:.1f} -> {100 * strong_report.clean_acc:.1f} %")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** Compare with the $\beta = 6$ row: past the paper's value the robust accuracy moves
# little while the clean accuracy keeps falling; the curve flattens. A very large $\beta$ also makes
# the boundary term dominate early training, when the clean predictions are still poor.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
for name in (names[0], names[-1]):
    report = reports[name]
    natural = 1 - report.clean_acc
    boundary = report.clean_acc - report.results[EPS]["PGD-20"]
    print(f"{name}: natural error {100 * natural:.1f} %, boundary error {100 * boundary:.1f} % "
          f"(robust error {100 * (natural + boundary):.1f} %)")
split = {name: (1 - reports[name].clean_acc, reports[name].clean_acc - reports[name].results[EPS]["PGD-20"])
         for name in (names[0], names[-1])}
(natural_small, boundary_small), (natural_large, boundary_large) = split.values()
expect(boundary_small > 5 * natural_small and boundary_large < boundary_small / 2 and natural_large > natural_small,
       "at a small beta the boundary error dominates; the large beta halves it for a little more natural error",
       f"boundary {100 * boundary_small:.1f} -> {100 * boundary_large:.1f} %, "
       f"natural {100 * natural_small:.1f} -> {100 * natural_large:.1f} %")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** The robust error is the sum of the two. At small $\beta$ the boundary error
# dominates (most correct images are still broken); the larger $\beta$ trades a little more natural
# error for a much smaller boundary error: exactly the split the objective is written in.

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** The clean accuracy next to it (where on the trade-off curve the model sits), the
# threat model and budget ($L_\infty$, $\epsilon$), the attacks behind the number (a worst case over
# a ladder, notebook 08), and the number of test images (its interval).

# %% [markdown]
# ## Self-check
#
# 1. Which term of the TRADES objective needs the label, and which does not?
# 2. What does $\beta \to 0$ reduce TRADES to?
# 3. Two models: 97 % clean / 60 % robust and 95 % clean / 70 % robust. Which is better?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: the cross-entropy needs $y$; the KL term compares the model with itself. 2:
# standard training. 3: neither in general: they are two points of a trade-off; the answer depends
# on how much clean accuracy the application can give up.

# %% [markdown]
# ## Summary
#
# * TRADES writes the robust error as natural error plus boundary error and weighs the second by
#   $\beta$.
# * Raising $\beta$ moves the model along a trade-off curve: more robust, somewhat less accurate.
#   Any robust accuracy is one point of such a curve: report the clean accuracy next to it.
#
# Back to the start: [00 · Tour](00_tour.ipynb).
