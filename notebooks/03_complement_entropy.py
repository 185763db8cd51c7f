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
# # 03 · Guided Complement Entropy: flatten the wrong classes
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/03_complement_entropy.ipynb)
#
# **Prerequisites:** notebooks 01-02 (attacks, adversarial training); softmax and entropy.
# **Student time:** about 45 minutes, plus about 2 minutes of training on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. define the complement distribution and the Guided Complement Entropy (GCE) loss, and say
#    what its guiding factor does;
# 2. see on a test set how much flatter GCE makes the wrong-class distribution than cross-entropy;
# 3. judge the claim "robustness for free" with and without adversarial training, using PGD
#    rather than single-step attacks.

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
import torch
from IPython.display import display

from robustviz import viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.evaluate import evaluate_robustness
from robustviz.evaluate.intervals import format_accuracy, wilson_interval
from robustviz.methods.gce import complement_statistics, plot_complement_entropy
from robustviz.methods.gce.loss import guided_complement_entropy, normalized_complement_entropy

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(500, 2000))

# %% [markdown]
# ## 1. The loss
#
# Cross-entropy only raises the true-class probability $\hat y_g$; how the remaining mass
# $1 - \hat y_g$ is spread over the $K - 1$ wrong classes is left to chance, so one runner-up
# class can sit close to the decision boundary. The **complement distribution** renormalises the
# wrong classes,
#
# $$q_j = \frac{\hat y_j}{1 - \hat y_g}\quad (j \ne g), \qquad H(q) = -\sum_{j \ne g} q_j \log q_j \in [0, \log(K-1)],$$
#
# and **Guided Complement Entropy** (Chen et al. 2019, [arXiv:1903.09799](https://arxiv.org/abs/1903.09799))
# maximises its normalised entropy, weighted by a *guiding factor* $\hat y_g^{\alpha}$:
#
# $$\mathcal{L}_{\text{GCE}} = -\frac{1}{N}\sum_{i=1}^{N} \hat y_{ig}^{\,\alpha}\; \frac{H(q_i)}{\log(K-1)} \in [-1, 0].$$
#
# The guiding factor switches the flattening on only where the model already gets the sample
# right; once the complement is flat, the loss reduces to $-\hat y_g^{\alpha}$ and raises the true
# class. With $\alpha = 0$ it could never raise the true class at all ($q$ does not depend on the
# true logit). The official MNIST setting is $\alpha = 1/3$. robustviz's `gce_at` uses GCE as
# the *outer* loss of PGD adversarial training (the inner attack maximises cross-entropy).

# %%
scores = torch.tensor([[4.0, 2.0, 2.0, 2.0], [4.0, 3.0041, 0.0, 0.0]])  # two samples of class 0, K = 4
labels = torch.tensor([0, 0])
print("true-class probability:", scores.softmax(dim=1)[:, 0].tolist())
print("normalised complement entropy:", normalized_complement_entropy(scores, labels).tolist())
losses = [float(guided_complement_entropy(s[None], l[None])) for s, l in zip(scores, labels)]
print("GCE loss of each sample:", losses)
expect(losses[0] < losses[1], "the sample with the flat complement has the lower GCE loss",
       f"{losses[0]:.4f} < {losses[1]:.4f}, at the same true-class probability")

# %% [markdown]
# Both samples give the true class the same probability (0.71), so cross-entropy scores them
# the same. GCE does not: the first sample's wrong classes are tied (a flat complement, entropy 1)
# and its loss is lower than the second's, whose runner-up class stands out.
#
# ## 2. Train GCE, with and without adversarial training

# %%
models = {key: course.train(key)[0] for key in ("ce", "gce", "pgd_at", "gce_at")}

# %% [markdown]
# ## 3. The complement distribution on the test set
#
# Left: the true-class probability. Right: the normalised complement entropy per test image
# (1 = perfectly flat wrong classes).

# %% tags=["plot"]
plot_complement_entropy({"ce": models["ce"], "gce": models["gce"]}, test.x, test.y)

# %%
entropy = {key: float(complement_statistics(models[key], test.x, test.y)[1].mean()) for key in ("ce", "gce")}
expect(entropy["gce"] > entropy["ce"] + 0.1, "GCE makes the wrong-class distribution much flatter than CE",
       f"mean normalised complement entropy {entropy['gce']:.2f} (gce) against {entropy['ce']:.2f} (ce)")

# %% [markdown]
# ## 4. The feature space
#
# The paper shows GCE features forming thinner, better separated class clusters than
# cross-entropy (a t-SNE of CIFAR-10 features). Here: PCA maps of the penultimate features of
# both models, with their PGD-20 copies at $\epsilon = 0.1$.

# %% tags=["plot"]
for key in ("ce", "gce"):
    feats = viz.extract(models[key], test, attack="pgd-20", eps=0.1, n=course.pick(300, 1000), seed=SEED)
    display(viz.plot_embedding(feats, method="pca", classes=bundle.classes, title=key))

# %% [markdown]
# ## 5. Robustness with and without adversarial training
#
# The paper's MNIST gains are largest under single-step attacks. Compare FGSM (solid) with
# PGD-20 (dashed) for all four models:

# %%
reports = {key: evaluate_robustness(model, test.x, test.y, eps=(0.1, 0.2, EPS), attacks=("fgsm", "pgd-20"),
                                    seed=SEED, progress=False)
           for key, model in models.items()}
for key, report in reports.items():
    print(report.table(key), "\n")

# %%
n = reports["ce"].n
pgd = {key: {eps: report.results[eps]["PGD-20"] for eps in (0.1, 0.2, EPS)} for key, report in reports.items()}
expect(abs(reports["gce"].clean_acc - reports["ce"].clean_acc) < 0.03,
       "GCE alone trains as accurate a classifier as cross-entropy",
       f"clean {format_accuracy(reports['gce'].clean_acc, n)} against {format_accuracy(reports['ce'].clean_acc, n)}")
expect(pgd["gce"][EPS] < 0.05 and pgd["ce"][EPS] < 0.05, f"without adversarial training neither is robust at eps = {EPS}",
       f"PGD-20: gce {100 * pgd['gce'][EPS]:.1f} %, ce {100 * pgd['ce'][EPS]:.1f} %")
overlap = all(max(wilson_interval(pgd["gce_at"][e], n)[0], wilson_interval(pgd["pgd_at"][e], n)[0])
              <= min(wilson_interval(pgd["gce_at"][e], n)[1], wilson_interval(pgd["pgd_at"][e], n)[1])
              for e in (0.1, 0.2, EPS))
expect(overlap, "GCE-AT and PGD-AT cannot be told apart on these test images: their 95 % intervals overlap at "
       "every budget", ", ".join(f"{e:g}: {100 * pgd['gce_at'][e]:.1f} vs {100 * pgd['pgd_at'][e]:.1f} %"
                                 for e in (0.1, 0.2, EPS)),
       why="another seed or more test images can separate them; the quick profile trains 5 epochs.")
expect(pgd["pgd_at"][EPS] > pgd["ce"][EPS] + 0.5, "adversarial training is what makes the difference at eps = 0.3",
       f"PGD-20: pgd_at {100 * pgd['pgd_at'][EPS]:.1f} %, gce_at {100 * pgd['gce_at'][EPS]:.1f} %, "
       f"gce {100 * pgd['gce'][EPS]:.1f} %")

# %% tags=["plot"]
viz.plot_accuracy_vs_eps(reports)

# %% [markdown]
# ## Exercises
#
# 1. **The role of $\alpha$.** Train `gce` with `method_kwargs=dict(alpha=1.0)` and compare its
#    clean accuracy and mean complement entropy with the default $\alpha = 1/3$.
# 2. **Under attack.** Is the complement still flat on *adversarial* inputs? Plot the complement
#    entropy of the `gce` model on clean and on PGD-20 ($\epsilon = 0.1$) test images.
# 3. **Reading the numbers.** Where does GCE *without* adversarial training beat cross-entropy, and
#    by how much, under FGSM and under PGD-20? Is it robust at the dataset's budget
#    $\epsilon = 0.3$? What would you run before believing the small-$\epsilon$ gains?

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
from robustviz.evaluate import accuracy

gce_alpha1, _ = course.train("gce", method_kwargs=dict(alpha=1.0), progress=False)
for name, model in (("alpha = 1/3", models["gce"]), ("alpha = 1", gce_alpha1)):
    _, flatness = complement_statistics(model, test.x, test.y)
    print(f"{name}: clean accuracy {format_accuracy(accuracy(model, test.x, test.y), len(test))}, mean complement "
          f"entropy {flatness.mean():.2f}")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** A larger $\alpha$ makes the guiding factor $\hat y_g^{\alpha}$ smaller for every
# sample that is not already confident, so the flattening is applied more selectively: the
# complement entropy ends lower, and the loss looks more like $-\hat y_g^{\alpha}$, a plain
# "raise the true class" term. Read both numbers above: the accuracies lie within each other's
# intervals; the flatness is what $\alpha$ changes.

# %% tags=["solution", "plot"] jupyter={"source_hidden": true}
# @title Solution 2
from robustviz.attacks import pgd

x_adv = pgd(models["gce"], test.x, test.y, eps=0.1, steps=20, seed=SEED)
plot_complement_entropy({"gce": models["gce"]}, test.x, test.y, title="gce, clean inputs")

# %% tags=["solution", "plot"] jupyter={"source_hidden": true}
plot_complement_entropy({"gce": models["gce"]}, x_adv, test.y, title="gce, PGD-20 inputs (eps 0.1)")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** No: on the adversarial inputs the true-class probability collapses and the
# complement is far less flat (the entropy histogram moves to the left). GCE shapes the
# distribution on the data it was trained on; the attack moves the input off that data.
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** Read the tables above: at small budgets GCE's curve lies somewhat to the right of
# cross-entropy's, but at $\epsilon = 0.3$ both are close to zero under PGD-20: GCE is not robust at
# the budget that matters, and only adversarial training (`pgd_at`, `gce_at`) keeps a
# substantial fraction of the test set there. Before believing a small-budget gain: check that
# it is larger than the 95 % intervals (`format_accuracy` prints them), and confirm it with
# stronger attacks (more steps and restarts, margin and DLR losses, AutoAttack: notebook 08). A
# loss that changes the shape of the softmax can also change how useful its gradients are to an
# attacker.

# %% [markdown]
# ## Self-check
#
# 1. Why can GCE with $\alpha = 0$ never raise the true-class probability?
# 2. Two models' PGD-20 accuracies on 500 test images are 71 % and 72 %. Is one more robust?
# 3. What is the range of the GCE loss with the $\log(K-1)$ normaliser, and when is it $-1$?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: the complement distribution $q$ does not depend on the true logit, so without the
# guiding factor nothing in the loss pulls it up. 2: not shown: the 95 % interval of each is about
# $\pm 4$ points, and a second seed moves them by about as much. 3: $[-1, 0]$; $-1$ when the true
# class has probability 1 and the wrong classes are exactly uniform.

# %% [markdown]
# ## Summary
#
# * GCE maximises the entropy of the wrong-class distribution, guided by $\hat y_g^{\alpha}$; it
#   makes the complement much flatter than cross-entropy does.
# * Its robustness "for free" is at most a gain at small budgets; at $\epsilon = 0.3$ it does not
#   replace adversarial training. As the outer loss of PGD-AT (`gce_at`) it cannot be told apart
#   from PGD-AT in the quick profile (the 95 % intervals overlap at every budget).
#
# Next: [04 · Repulsive prototypes](04_repulsive_prototypes.ipynb).
