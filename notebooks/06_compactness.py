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
# # 06 · ADR: local and global compactness, and the clustering assumption
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/06_compactness.ipynb)
#
# **Prerequisites:** notebook 02 (PGD adversarial training); L1 distances, entropy, KL divergence.
# **Student time:** about 50 minutes, plus about 5 minutes of training on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. write down ADR's four regularisers and say what each one pulls or pushes;
# 2. measure the *divergence* ADR is named after: how far an adversarial input's representation
#    drifts from its clean copy, layer by layer;
# 3. run an ablation (switch the terms off one group at a time) and read it with the noise of a
#    small experiment in mind.

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
from IPython.display import Markdown, display

from robustviz import viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.attacks import pgd
from robustviz.evaluate import evaluate_robustness
from robustviz.evaluate.intervals import format_accuracy, wilson_interval


def intervals_overlap(a: float, b: float, n: int) -> bool:
    """Whether the 95 % Wilson intervals of two accuracies measured on n images overlap."""
    (low_a, high_a), (low_b, high_b) = wilson_interval(a, n), wilson_interval(b, n)
    return max(low_a, low_b) <= min(high_a, high_b)

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(500, 2000))

# %% [markdown]
# ## 1. The terms
#
# ADR (Bui et al. 2020, [arXiv:2007.05123](https://arxiv.org/abs/2007.05123)) keeps PGD
# adversarial training and adds regularisers on the features $z = g(x)$ (the layer before the
# classifier), with $x^a$ the PGD example of $x$, batch size $b$ and feature size $k$:
#
# * **local compactness**: each adversarial representation stays close to its own clean one,
#   $\displaystyle L_{lc} = \frac{1}{b}\sum_i \frac{1}{k}\,\|z_i - z_i^a\|_1$;
# * **global compactness**: it is also pulled towards the clean representations of every
#   same-class sample of the batch, and very weakly pushed away from the others,
#   $\displaystyle L_{gc} = \frac{1}{b^2}\sum_{i,j} w_{ij}\,\frac{1}{k}\,\|z_j - z_i^a\|_1$ with
#   $w_{ij} = 1$ for $y_i = y_j$ and $w_{ij} = 1 - 1/0.99 \approx -0.01$ otherwise;
# * **clustering assumption** (decision boundaries in low-density regions): confident
#   adversarial predictions, $L_{ent} = \frac{1}{b}\sum_i H\big(p(x_i^a)\big)$, and clean and
#   adversarial predictions that agree, $L_{vat} = \frac{1}{b}\sum_i \mathrm{CE}\big(p(x_i), p(x_i^a)\big)$
#   (clean side fixed).
#
# $$L = \tfrac12\,\mathrm{CE}(x) + \tfrac12\,\mathrm{CE}(x^a) + \lambda_{lc}L_{lc} + \lambda_{gc}L_{gc} + \lambda_{ent}L_{ent} + \lambda_{vat}L_{vat},
# \qquad \lambda = 1 \text{ each (the authors' code).}$$
#
# (In the quick profile robustviz lets $L_{lc}$ and $L_{gc}$ move the clean features too,
# `detach_clean=False`: with the authors' fixed clean target the features of this small CNN
# grew without bound; the recipe's docstring has the measurements.)

# %% [markdown]
# ## 2. Train, and follow every term
#
# Each term is logged per epoch in the training history (`lc`, `gc`, `ent`, `vat`, next to the
# base `clean_ce` and `adv_ce`; `gs` is the unused global smoothness term):

# %%
models = {key: course.train(key)[0] for key in ("ce", "pgd_at")}
models["adr"], adr_history = course.train("adr")
terms = ("clean_ce", "adv_ce", "lc", "gc", "ent", "vat")
lines = ["| epoch | " + " | ".join(terms) + " |", "|---:" * (len(terms) + 1) + "|"]
lines += [f"| {r['epoch']} | " + " | ".join(f"{r[t]:.3f}" for t in terms) + " |" for r in adr_history.records]
display(Markdown("\n".join(lines)))
first, last = adr_history.records[0], adr_history.records[-1]
peak = max(adr_history.records, key=lambda r: r["lc"])
expect(last["adv_ce"] < first["adv_ce"] and last["lc"] < 0.8 * peak["lc"],
       "the adversarial cross-entropy falls; L_lc first rises, then falls from its peak",
       f"adv_ce {first['adv_ce']:.3f} -> {last['adv_ce']:.3f}; lc {first['lc']:.3f}, peak {peak['lc']:.3f} "
       f"(epoch {peak['epoch']}), last {last['lc']:.3f}")
expect(last["z_norm"] < 100, "the features stay bounded (the repulsion of L_gc is unbounded in principle)",
       f"mean ||z|| of the adversarial features in the last epoch: {last['z_norm']:.1f}")

# %% [markdown]
# $L_{lc}$ does not fall from the start: it rises after the first epoch and falls from its peak
# on, while the adversarial cross-entropy falls throughout (the table above). An L1 distance also
# depends on the scale of the features, which changes most in the first epochs (`z_norm` in the
# history). Every term in its own panel, with the held-out clean and PGD accuracy and the learning rate:

# %% tags=["plot"]
viz.plot_training_curves({"adr": adr_history})

# %% [markdown]
# ## 3. Layer-wise divergence
#
# For each layer $l$, the mean relative distance between the clean and the adversarial
# representation, $\|h_l(x) - h_l(x^a)\|_2 / \|h_l(x)\|_2$, with $x^a$ PGD-20 at
# $\epsilon = 0.3$ crafted against each model itself. In the standard model the relative change
# is large and largest at the output; adversarial training keeps it smaller in every layer.

# %% tags=["plot"]
xs, ys = test.x[:200], test.y[:200]
curves = {key: viz.layerwise_divergence(model, xs, pgd(model, xs, ys, eps=EPS, steps=20, seed=SEED))
          for key, model in models.items()}
viz.plot_layer_divergence(curves)

# %%
output = {key: list(curve.values())[-1] for key, curve in curves.items()}
expect(output["ce"] > 2 * max(output["pgd_at"], output["adr"]),
       "at the network's last layer the attack changes the standard model's representation far more",
       ", ".join(f"{key} {value:.2f}" for key, value in output.items()))

# %% [markdown]
# ## 4. Robustness
#
# Solid: FGSM, dashed: PGD-20.

# %% tags=["plot"]
reports = {key: evaluate_robustness(model, test.x, test.y, eps=(0.1, 0.2, EPS), attacks=("fgsm", "pgd-20"),
                                    seed=SEED, progress=False)
           for key, model in models.items()}
viz.plot_accuracy_vs_eps(reports)

# %%
adr_pgd, pgd_at_pgd = reports["adr"].results[EPS]["PGD-20"], reports["pgd_at"].results[EPS]["PGD-20"]
expect(adr_pgd > 0.5, f"ADR is robust at eps = {EPS} (it is adversarial training)",
       "PGD-20 " + format_accuracy(adr_pgd, reports["adr"].n))
expect(intervals_overlap(adr_pgd, pgd_at_pgd, reports["adr"].n),
       "ADR and plain PGD-AT cannot be told apart on these test images (their 95 % intervals overlap)",
       f"PGD-20 at {EPS}: adr {format_accuracy(adr_pgd, reports['adr'].n)}, pgd_at "
       f"{format_accuracy(pgd_at_pgd, reports['pgd_at'].n)}",
       why="the paper's gains are one to two points; the quick profile's 500 test images cannot resolve them.")

# %% [markdown]
# ## 5. Ablation
#
# Switch off one group of terms at a time. In the quick profile the ablation trains on 2,000
# images (so that it fits in a couple of minutes); in the full profile every variant gets the
# recipe's full settings.

# %%
ablation_settings = course.pick({"n_train": 2000}, {})
variants = {
    "ADR (all terms)": {},
    "no compactness (lc = gc = 0)": dict(lambda_lc=0.0, lambda_gc=0.0),
    "no clustering terms (ent = vat = 0)": dict(lambda_ent=0.0, lambda_vat=0.0),
}
ablation = {}
for name, weights in variants.items():
    model, _ = course.train("adr", method_kwargs=weights, progress=False, **ablation_settings)
    ablation[name] = evaluate_robustness(model, test.x, test.y, eps=(0.2, EPS), attacks=("pgd-20",), seed=SEED,
                                         progress=False)
    accuracies = ablation[name].results
    print(f"{name:<38} clean {100 * ablation[name].clean_acc:5.1f}%  PGD-20 at 0.2 "
          f"{100 * accuracies[0.2]['PGD-20']:5.1f}%, at {EPS} {format_accuracy(accuracies[EPS]['PGD-20'], len(test))}")

# %% tags=["plot"]
viz.plot_accuracy_vs_eps(ablation)

# %% [markdown]
# How big is a difference of a few points here? Test images are a sample: with $n = 500$ the
# standard error of an accuracy $p$ is $\sqrt{p(1-p)/n}$, about 2.2 points at $p = 0.5$ (the 95 %
# interval is about $\pm 4.4$ points), and a different training seed moves the numbers by about as
# much. The check below asks whether any variant is outside the full ADR's interval.

# %%
full = ablation["ADR (all terms)"].results[EPS]["PGD-20"]
same = {name: intervals_overlap(report.results[EPS]["PGD-20"], full, len(test)) for name, report in ablation.items()}
expect(all(same.values()), "at this budget the ablation cannot tell the variants apart: every 95 % interval "
       "overlaps the full ADR's", ", ".join(f"{name}: {100 * r.results[EPS]['PGD-20']:.1f} %"
                                            for name, r in ablation.items()),
       why="with more data, epochs or test images a term's effect can become measurable; check it with seeds.")

# %% [markdown]
# So the ablation's honest conclusion is: *on this budget, no term's effect is measurable*. Read
# the curves as a picture of what each term does; a claim that a term helps needs several seeds,
# more test images and the full profile (the paper's own ablation tables are not available).

# %% [markdown]
# ## Exercises
#
# 1. **Compactness, measured.** Compute $L_{lc}$ for the PGD-AT and the ADR model on a test batch
#    (`robustviz.methods.adr.loss.local_compactness(z_clean, z_adv)`). Which is more compact?
# 2. **Global compactness in pictures.** Map the ADR model's features with PCA, clean and under
#    PGD-20 at $\epsilon = 0.3$, and compare with `pgd_at`'s map.
# 3. **A second seed.** Train the full-ADR variant of the ablation again with another seed
#    (`course.train("adr", seed=1, ...)`). How much does its PGD-20 accuracy move?

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
from robustviz.methods.adr.loss import local_compactness
from robustviz.viz import features_of

for key in ("pgd_at", "adr"):
    model = models[key]
    x_adv = pgd(model, xs, ys, eps=EPS, steps=20, seed=SEED)
    lc = local_compactness(features_of(model, xs), features_of(model, x_adv))
    scale = float(features_of(model, xs).abs().mean())
    print(f"{key:<7} L_lc on PGD-20 pairs: {float(lc):.4f}  (mean |z| {scale:.3f}, relative {float(lc) / scale:.3f})")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** Compare the *relative* numbers ($L_{lc}$ divided by the mean $|z|$): an L1 distance
# means little without the size of the features, and the two models scale their features
# differently. The model with the smaller relative $L_{lc}$ keeps its adversarial representations
# closer to the clean ones; ADR optimises exactly this, PGD-AT only indirectly.

# %% tags=["solution", "plot"] jupyter={"source_hidden": true}
# @title Solution 2
for key in ("pgd_at", "adr"):
    feats = viz.extract(models[key], test, attack="pgd-20", eps=EPS, n=course.pick(300, 1000), seed=SEED)
    display(viz.plot_embedding(feats, method="pca", classes=bundle.classes, title=key))

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** In both maps most crosses stay near their own class, and the misclassified
# (ringed) ones lie between clusters. A PCA map keeps only the two directions of largest variance,
# so "tighter" clusters in it need the trustworthiness and the separation metrics of notebook 09
# before they mean more compact features.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
second, _ = course.train("adr", seed=1, progress=False, **ablation_settings)
again = evaluate_robustness(second, test.x, test.y, eps=(EPS,), attacks=("pgd-20",), progress=False)
print(f"PGD-20 at {EPS}: seed 0 {100 * ablation['ADR (all terms)'].results[EPS]['PGD-20']:.1f}%, "
      f"seed 1 {100 * again.results[EPS]['PGD-20']:.1f}%")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** The change between the two seeds (printed above) is of the same size as the
# differences between the ablation's variants: a single-seed ablation at this budget measures
# the seed as much as the terms. Report ablations with several seeds and intervals.

# %% [markdown]
# ## Self-check
#
# 1. $L_{gc}$ pulls an adversarial feature towards the clean features of its class and pushes it
#    away from the others with weight $-1/99$. Why is that push "unbounded", and what would you
#    monitor?
# 2. Two variants of an ablation score 69.8 % and 72.0 % on 500 test images. What can you conclude?
# 3. What does the layer-wise divergence measure, and why is it relative?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: a negative weight rewards *growing* the distance to other-class features without
# limit; monitor the feature norm (`z_norm`) and $L_{gc}$ going negative. 2: nothing yet: the
# intervals (about $\pm 4$ points) overlap; more test images and seeds are needed. 3: how far the
# attack moves each layer's output, divided by the size of that output, so that layers of
# different scales can be compared.

# %% [markdown]
# ## Summary
#
# * ADR adds feature-space terms to adversarial training: local and global compactness of the
#   adversarial representations, and low-entropy, consistent adversarial predictions.
# * The divergence it is named after is easy to measure: adversarial training (with or without
#   the terms) keeps the clean and adversarial representations close in every layer.
# * Ablations on small data are noisy; at this budget no term's effect is measurable. Report
#   ablations with seeds and intervals.
#
# Next: [07 · Single-step regularizers](07_single_step_regularizers.ipynb).
