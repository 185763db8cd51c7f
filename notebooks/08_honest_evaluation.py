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
# # 08 · Honest evaluation: the attack ladder and the masking diagnostics, for every method
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/08_honest_evaluation.ipynb)
#
# **Learning objectives.** After this notebook you can
#
# 1. climb the attack ladder (FGSM, PGD, restarts, margin and DLR losses, an adaptive attack on
#    the method's own decision rule, AutoAttack) and report the *verified* number, the per-sample
#    worst case over all of them;
# 2. read the gap between the reported (PGD-20) and the verified number for each method;
# 3. put the gradient-masking diagnostics of every method side by side and say which numbers to
#    trust.

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
METHODS = None  # None: a representative five in the quick profile, every recipe in the full profile

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from robustviz import methods, runs, viz
from robustviz.compare import ladder_table
from robustviz.evaluate import LADDER_LEVELS, diagnose, diagnoses_table, ladder

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(100, 1000))
keys = METHODS or course.pick(["ce", "pgd_at", "fgsm_at", "clustr", "sat_r2"], list(methods.RECIPES))
level = course.pick("quick", "standard")
print("methods:", ", ".join(keys), f"| {len(test)} test images | ladder level {level!r}:", LADDER_LEVELS[level])

# %% [markdown]
# ## 1. Why a ladder
#
# A robust accuracy is an *upper bound*: the fraction of inputs the attacks tried could not
# break. A weak attack gives a high number for the wrong reason. The ladder runs attacks of
# growing strength at one budget and keeps, per sample, the worst case so far:
#
# $$\text{verified} = \frac{1}{n}\sum_{i=1}^{n} \mathbb{1}\Big[f(x_i) = y_i \ \wedge\ \bigwedge_{a \in \text{attacks}} f\big(a(x_i)\big) = y_i\Big].$$
#
# The rungs (Carlini et al. 2019, "On evaluating adversarial robustness",
# [arXiv:1902.06705](https://arxiv.org/abs/1902.06705); Croce & Hein 2020, AutoAttack,
# [arXiv:2003.01690](https://arxiv.org/abs/2003.01690)): more steps and random restarts; losses
# that do not saturate (CW margin, DLR); an *adaptive* attack, margin and cross-entropy PGD on every
# view of the method's own decision rule (for cluster models also the hard nearest-centre rule); AutoAttack
# (in the quick profile its `fast` version, APGD-CE + APGD-T; `standard` adds FAB-T and Square).
#
# ## 2. Train (or load) every method and climb

# %%
models = {key: course.train(key)[0] for key in keys}
ladders = {key: ladder(model, test, EPS, level=level, n=None, seed=SEED, progress=False)
           for key, model in models.items()}
display(Markdown("\n".join(ladder_table([{"method": key, "ladder": report} for key, report in ladders.items()]))))

# %% [markdown]
# Each method's ladder as a picture: bars are the accuracy under each attack alone, the red line
# the worst case so far, the dashed line the reported (PGD-20) number.

# %% tags=["plot"]
for key, report in ladders.items():
    fig = viz.plot_ladder(report)
    fig.suptitle(key)
    display(fig)

# %% [markdown]
# ## 3. The gradient-masking diagnostics, side by side
#
# The same flags as in notebook 07, for every method; the transfer attack is crafted on the
# standard `ce` model. **RAISED** marks a warning sign; the number is the measured value.

# %%
surrogate = models["ce"] if "ce" in models else course.train("ce", progress=False)[0]
diagnoses = {key: diagnose(model, test, EPS, n=None, surrogate=surrogate, seed=SEED,
                          strong_attack=course.pick((50, 2), (100, 3)))  # (steps, restarts) of the strong PGD
             for key, model in models.items()}
display(Markdown(diagnoses_table(diagnoses)))

# %% [markdown]
# ## 4. Reading the table
#
# * A method whose verified number is far below its PGD-20 number was *over-reported* by PGD-20:
#   quote the verified number, and the attacks that produced it.
# * A raised flag is a reason to distrust a number until stronger attacks have been run; no raised
#   flag proves nothing.
# * Robust accuracy at $\epsilon = 0.3$ needs adversarial training: methods without it (standard
#   training, `clustr`; `drp` too, if you add it to `METHODS`) are at or near zero once the attack
#   targets the decision rule.
# * These quick-profile models are trained on 2,000 images for a few epochs and evaluated on
#   100 test images (a standard error of up to 5 points): they show the *phenomena*. For numbers
#   to report, set `PROFILE = "full"` (every recipe, the papers' settings, AutoAttack standard on
#   1,000 images; a GPU).

# %% [markdown]
# ## Exercises
#
# 1. **Your own claimed number.** Suppose a paper claims 60% for `sat_r2` at $\epsilon = 0.3$.
#    Pass `reported=0.6` to `ladder` and read the gap column.
# 2. **Budget matters.** Climb the ladder for `clustr` at $\epsilon = 0.1$ instead. Where does the
#    largest drop happen?
# 3. **Which rung did the work?** From `report.correct` (the worst case after each rung, per
#    sample), count for `pgd_at` how many samples each rung broke for the first time.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
model = models.get("sat_r2") or course.train("sat_r2", progress=False)[0]
print(ladder(model, test, EPS, attacks=("pgd-20", "pgd-50-margin"), reported=0.6, n=None, seed=SEED,
             progress=False).table())

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
model = models.get("clustr") or course.train("clustr", progress=False)[0]
print(ladder(model, test, 0.1, attacks=("fgsm", "pgd-20", "pgd-50-margin", "adaptive-50"), n=None, seed=SEED,
             progress=False).table())

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
report = ladders.get("pgd_at") or ladder(course.train("pgd_at", progress=False)[0], test, EPS, level=level, n=None)
previous = None
for attack, worst in report.correct.items():
    broken = int((~worst).sum()) if previous is None else int((previous & ~worst).sum())
    print(f"{attack:<16} broke {broken} more samples")
    previous = worst

# %% [markdown]
# ## Summary
#
# * Report the per-sample worst case over a ladder of attacks, including one that adapts to the
#   method's decision rule and AutoAttack, and name the attacks next to the number.
# * Use the masking diagnostics to decide where to look harder; they are warnings, not proofs.
#
# Next: [09 · The feature-space explorer](09_feature_space_explorer.ipynb).
