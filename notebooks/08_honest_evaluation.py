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
# **Prerequisites:** notebooks 01, 02 and 07 (attacks, adversarial training, the diagnostics);
# the methods of 03-06 help. **Student time:** about 45 minutes, plus about 5 minutes of computing
# on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. climb the attack ladder (FGSM, PGD, restarts, margin and DLR losses, an adaptive attack on
#    the method's own decision rule, AutoAttack) and report the *worst case over attacks*, the
#    per-sample worst case over all of them, an upper bound of the true robust accuracy;
# 2. read the gap between the reported (PGD-20) number and the worst case for each method;
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
PROFILE = "quick"  # "quick": CPU, minutes; "lab": one GPU, ~10 min per recipe; "full": the papers' settings
SEED = 0
DATASET = "mnist-mini"
N_TRAIN = None  # None: every training image; a number trains on a subset
EPS = 0.3
METHODS = None  # None: a representative five in the quick profile, every recipe in the full profile

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from robustviz import methods, viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.app.compare import ladder_table
from robustviz.evaluate import LADDER_LEVELS, diagnose, diagnoses_table, ladder
from robustviz.evaluate.intervals import format_accuracy

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(200, 1000))
keys = METHODS or course.pick(["ce", "pgd_at", "fgsm_at", "clustr", "sat_r2"], list(methods.RECIPES))
level = course.pick("quick", "standard")
print("methods:", ", ".join(keys), f"| {len(test)} test images | ladder level {level!r}:", LADDER_LEVELS[level])

# %% [markdown]
# ## 1. Why a ladder
#
# A robust accuracy measured with attacks is an *upper bound*: the fraction of inputs the attacks
# tried could not break. A weak attack gives a high number for the wrong reason. The ladder runs
# attacks of growing strength at one budget and keeps, per sample, the worst case so far:
#
# $$\text{worst case over attacks} = \frac{1}{n}\sum_{i=1}^{n} \mathbb{1}\Big[f(x_i) = y_i \ \wedge\ \bigwedge_{a \in \text{attacks}} f\big(a(x_i)\big) = y_i\Big].$$
#
# It is still an upper bound: only a *certificate* (a proof that no point of the ball changes the
# prediction, notebook 05) gives a lower bound, and only a certified number deserves the word
# "verified".
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
n = len(test)
for key, report in ladders.items():
    print(f"{key:<9} worst case over attacks {format_accuracy(report.worst_case, n)}")

# %%
expect(all(report.worst_case <= report.accuracy("PGD-20") for report in ladders.values()),
       "the worst case over the ladder is never above the reported PGD-20 number", "for every method")
if "ce" in ladders:
    expect(ladders["ce"].worst_case < 0.02, "the standard model has no robustness at eps = 0.3",
           format_accuracy(ladders["ce"].worst_case, n))
if "fgsm_at" in ladders:
    expect(ladders["fgsm_at"].worst_case < 0.05, "FGSM-AT's robustness is gone under the ladder",
           f"FGSM {100 * ladders['fgsm_at'].accuracy('FGSM'):.0f} %, worst case "
           f"{format_accuracy(ladders['fgsm_at'].worst_case, n)}")
if "clustr" in ladders:
    expect(ladders["clustr"].worst_case < 0.05, "so is ClusTR's, trained without adversarial examples",
           format_accuracy(ladders["clustr"].worst_case, n))
if "pgd_at" in ladders:
    gap = ladders["pgd_at"].accuracy("PGD-20") - ladders["pgd_at"].worst_case
    expect(gap > 0.05, "PGD-20 over-reports even PGD-AT by more than five points",
           f"PGD-20 {100 * ladders['pgd_at'].accuracy('PGD-20'):.1f} %, worst case over attacks "
           f"{100 * ladders['pgd_at'].worst_case:.1f} % (gap {100 * gap:.1f} points)",
           why="a longer-trained model has a smoother loss; the gap shrinks but rarely vanishes.")

# %% [markdown]
# Each method's ladder as a picture: bars are the accuracy under each attack alone, the red line
# the worst case so far, the dashed line the reported (PGD-20) number. Two of them: PGD-AT and
# the method with the largest gap.

# %% tags=["plot"]
largest_gap = max(ladders, key=lambda key: ladders[key].accuracy("PGD-20") - ladders[key].worst_case)
for key in dict.fromkeys([k for k in ("pgd_at",) if k in ladders] + [largest_gap]):
    fig = viz.plot_ladder(ladders[key])
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
if "fgsm_at" in diagnoses:
    expect(diagnoses["fgsm_at"].suspicious, "FGSM-AT raises masking flags",
           ", ".join(diagnoses["fgsm_at"].raised))
masking = {key: [flag for flag in d.raised if flag != "more_steps_still_help"] for key, d in diagnoses.items()}
if "pgd_at" in diagnoses:
    expect(not masking["pgd_at"], "PGD-AT raises none of the gradient-masking signatures",
           f"raised: {', '.join(diagnoses['pgd_at'].raised) or 'none'}")

# %% [markdown]
# ## 4. No flag proves nothing: PGD-AT
#
# PGD-AT raises none of the gradient-masking signatures: its gradients are informative (they
# align inside the ball, the loss rises monotonically along them, transfer attacks are weaker
# than white-box ones). Yet the ladder took several points off its PGD-20 number, most of them
# with AutoAttack's targeted APGD. Nothing is *masked*; the reported attack was simply not the
# strongest: one cross-entropy run from one start, where a targeted attack on the DLR loss finds
# adversarial examples towards each wrong class in turn. The diagnostics look for broken
# gradients; they cannot tell you that a stronger attack exists. Only climbing can.

# %% [markdown]
# ## 5. Reading the table
#
# * A method whose worst case over attacks is far below its PGD-20 number was *over-reported* by
#   PGD-20: quote the worst case, and the attacks that produced it.
# * A raised flag is a reason to distrust a number until stronger attacks have been run; no raised
#   flag proves nothing.
# * Robust accuracy at $\epsilon = 0.3$ needs adversarial training: methods without it (standard
#   training, `clustr`; `drp` too, if you add it to `METHODS`) are at or near zero once the attack
#   targets the decision rule.
# * These quick-profile models are trained for a few epochs and evaluated on 200 test images (a
#   95 % interval of up to $\pm 7$ points): they show the *phenomena*. For numbers to report, set
#   `PROFILE = "full"` (every recipe, the papers' settings, AutoAttack standard on 1,000 images; a
#   GPU).

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

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** The last column is the claimed 60 % minus the worst case so far: how much of the
# claim these two attacks alone already take away. A claim above a measured worst case is refuted
# by those attacks; a claim below it is not confirmed either (the worst case is an upper bound).

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
model = models.get("clustr") or course.train("clustr", progress=False)[0]
print(ladder(model, test, 0.1, attacks=("fgsm", "pgd-20", "pgd-50-margin", "adaptive-50"), n=None, seed=SEED,
             progress=False).table())

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** At $\epsilon = 0.1$ ClusTR keeps part of its accuracy, and the largest drop is from
# FGSM to the first iterative attack: like the standard model, it has no robustness that survives
# a multi-step attack on its own decision rule, only a smaller budget.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
report = ladders.get("pgd_at") or ladder(course.train("pgd_at", progress=False)[0], test, EPS, level=level, n=None)
previous = None
for attack, worst in report.correct.items():
    broken = int((~worst).sum()) if previous is None else int((previous & ~worst).sum())
    print(f"{attack:<16} broke {broken} more samples")
    previous = worst

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** (The first line also counts the samples that were misclassified clean.) After
# FGSM and PGD-20, the restarts and the other losses add little; AutoAttack's rung breaks the
# largest number of the remaining samples: the targeted DLR attack finds what cross-entropy PGD
# from one start missed (section 4).

# %% [markdown]
# ## Self-check
#
# 1. Why is a robust accuracy measured with attacks an upper bound, and what would give a lower
#    bound?
# 2. A model raises no diagnostic flag. What may you conclude?
# 3. Two attacks each leave 60 % of the samples correct. Can the worst case over both be 40 %?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: an attack can only show that a sample breaks, never that it cannot; a certificate
# (a proof for every point of the ball) gives a lower bound. 2: that the gradients look
# informative, not that the number is right (section 4). 3: yes: each attack may break different
# samples; the worst case counts a sample only if it survived both.

# %% [markdown]
# ## Summary
#
# * Report the per-sample worst case over a ladder of attacks, including one that adapts to the
#   method's decision rule and AutoAttack, and name the attacks next to the number; call it what it
#   is, an upper bound, not a verified (certified) accuracy.
# * Use the masking diagnostics to decide where to look harder; they are warnings, not proofs: a
#   model with no flag (PGD-AT) can still be over-reported by a weak attack.
#
# Next: [09 · The feature-space explorer](09_feature_space_explorer.ipynb).
