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
# # 09 · The feature-space explorer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/09_feature_space_explorer.ipynb)
#
# **Prerequisites:** notebooks 00-02; the later ones add models to explore. **Student time:**
# about 40 minutes, plus about 2 minutes of computing on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. explore every model trained in this course side by side: pick a model, an attack, a 2-D map
#    and the classes shown, and move the eps slider to watch the adversarial features travel;
# 2. say what a 2-D map of a feature space can and cannot show (its trustworthiness);
# 3. compare how an attack changes each model's feature space with separation metrics measured in
#    the feature space itself, not in a map;
# 4. inspect single points (image, perturbation, predictions, path across eps), link two models'
#    maps, and bring your own model (any `nn.Module`, e.g. a torchvision ResNet) into all of this.

# %% tags=["colab"]
# On Colab: fetch robustviz (the code and its embedded dataset) and install it. Elsewhere: nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    if not os.path.isdir("/content/robustviz"):
        subprocess.run(["git", "clone", "-q", "--depth", "1", "https://github.com/robustviz-org/robustviz",
                        "/content/robustviz"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/robustviz", "ipympl"],
                       check=True)
    sys.path.insert(0, "/content/robustviz")
    from google.colab import output

    output.enable_custom_widget_manager()

# %% tags=["parameters"]
PROFILE = "quick"  # "quick": CPU, minutes; "lab": one GPU, ~10 min per recipe; "full": the papers' settings
SEED = 0
DATASET = "mnist-mini"
N_TRAIN = None  # None: every training image; a number trains on a subset
EPS = 0.3
ALWAYS = ["ce", "pgd_at", "fgsm_at"]  # trained if missing; every other finished run is picked up too

# %%
# %matplotlib inline
import numpy as np
from IPython.display import Markdown, display

from robustviz import viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.evaluate.intervals import format_accuracy
from robustviz.viz import precompute, separation_metrics

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()

# %% [markdown]
# ## 1. Every model of the course
#
# `course.finished()` lists the recipes with a finished run in the cache for these settings
# (everything the earlier notebooks trained); the `ALWAYS` ones are trained if they are missing.

# %%
keys = list(dict.fromkeys(ALWAYS + course.finished()))
models = {key: course.train(key)[0] for key in keys}
print("models:", ", ".join(models))

# %% [markdown]
# ## 2. Precompute once, explore instantly
#
# The explorer attacks every model at every eps on the slider, extracts the features and fits
# the 2-D maps *once*, up front; moving a widget afterwards only moves points. Each map is fitted
# on the clean features and the adversarial features are placed into it, so an arrow shows where
# the attack moved a point *in the clean geometry*.

# %%
explored = precompute(models, bundle, attacks=("fgsm", "pgd-10"), eps_values=(0.0, 0.1, 0.2, EPS),
                      methods=course.pick(("pca", "lda"), ("pca", "lda", "umap")), n=course.pick(300, 1000),
                      seed=SEED, progress=False, cache_dir=course.results / "maps")


def robust_accuracy(key: str, attack: str, eps: float) -> float:
    """Share of the explored test images classified correctly both clean and under the attack."""
    feats = explored.features[key][(attack, eps)]
    return float(((feats.pred_clean == feats.labels) & (feats.pred_adv == feats.labels)).float().mean())


n = len(explored.features[keys[0]][("fgsm", EPS)].labels)
for key in models:
    print(f"{key:<15} robust accuracy at eps {EPS}: FGSM {100 * robust_accuracy(key, 'fgsm', EPS):5.1f} %, "
          f"PGD-10 {100 * robust_accuracy(key, 'pgd-10', EPS):5.1f} % (n = {n})")

# %% [markdown]
# **Zoom, pan, inspect.** The toolbar left of the map zooms (rectangle) and pans; the house
# resets the view. With neither on, *click a point* (a dot or a cross): the panel below the map
# shows that test image, its adversarial copy, the perturbation amplified to full contrast, the
# true class and both predictions with their confidences (softmax of the scores), and the point's
# path across the eps values; the path is drawn on the map too. (Maps are cached on disk in the
# run cache, so reopening the notebook does not refit them.)

# %% tags=["widget"]
explorer = viz.explorer(explored)
explorer

# %% [markdown]
# Without a live kernel (a static page, a script) the same explorer shows one figure per eps for
# the current choice; `static_figures()` returns them:

# %% tags=["plot"]
explorer.run_selector.value = "pgd_at" if "pgd_at" in models else keys[0]
explorer.attack_selector.value = "pgd-10"
explorer.static_figures()[-1]

# %%
expect(robust_accuracy("ce", "pgd-10", EPS) < 0.05 and robust_accuracy("pgd_at", "pgd-10", EPS) > 0.5,
       f"under PGD-10 at eps = {EPS} the standard model's points all leave their class; PGD-AT keeps most home",
       f"ce {format_accuracy(robust_accuracy('ce', 'pgd-10', EPS), n)}, pgd_at "
       f"{format_accuracy(robust_accuracy('pgd_at', 'pgd-10', EPS), n)}")
expect(robust_accuracy("fgsm_at", "fgsm", EPS) > 0.5 and robust_accuracy("fgsm_at", "pgd-10", EPS) < 0.1,
       "under FGSM the pseudo-robust FGSM-AT looks robust; under PGD-10 its points leave as the standard model's do",
       f"FGSM {100 * robust_accuracy('fgsm_at', 'fgsm', EPS):.1f} %, PGD-10 "
       f"{100 * robust_accuracy('fgsm_at', 'pgd-10', EPS):.1f} %")

# %% [markdown]
# The same panel without a kernel: `point_details` gathers what the explorer knows about one test
# point, `plot_point` draws it. Here the first test point the PGD-10 attack flips for `ce`:

# %% tags=["plot"]
flipped = explored.features["ce"][("pgd-10", EPS)]
first_flipped = int(((flipped.pred_clean == flipped.labels) & (flipped.pred_adv != flipped.labels)).nonzero()[0])
point = viz.point_details(explored, "ce", "pgd-10", EPS, first_flipped)
viz.plot_point(point, explored.classes)

# %%
expect(point.pred_adv != point.label and float((point.adversarial_image - point.image).abs().max()) <= EPS + 1e-3,
       f"the inspected point's adversarial copy stays within eps = {EPS} of the clean image and changes the prediction",
       f"point {first_flipped}: true {point.label}, clean {point.pred_clean}, adversarial {point.pred_adv}")

# %% [markdown]
# **Linked views.** Two models side by side on the *same* test points. Drag a rectangle in one
# map: the same points get a black ring in both, and the line below says how many of them each
# model still gets right. Select a tight cluster of `pgd_at` and see where those points sit for
# `ce`.

# %% tags=["widget"]
linked = viz.linked_explorer(explored, ("ce", "pgd_at"))
linked

# %% [markdown]
# ## 3. A map is a summary: its trustworthiness
#
# Every map comes with its *trustworthiness* (Venna & Kaski 2001; scikit-learn's
# `trustworthiness`, $k = 5$ neighbours): with $U_i^{(k)}$ the points among the $k$ nearest
# neighbours of point $i$ *in the map* that are not among its $k$ nearest *in feature space*, and
# $r(i, j)$ the rank of $j$ among $i$'s neighbours in feature space,
#
# $$T(k) = 1 - \frac{2}{n k (2n - 3k - 1)} \sum_{i=1}^{n} \sum_{j \in U_i^{(k)}} \big(r(i, j) - k\big) \in [0, 1].$$
#
# $T = 1$: every neighbourhood of the map is a neighbourhood in feature space. PCA keeps global
# distances but crowds the classes; LDA uses the labels to pull them apart; UMAP (full profile)
# keeps neighbourhoods. Structure in a map with low trustworthiness may be invented by the map.

# %%
trust = {key: {m: explored.projections[(key, m, explored.attacks[0], EPS)].trustworthiness for m in explored.methods}
         for key in models}
lines = ["| model | " + " | ".join(explored.methods) + " |", "|---|" + "---|" * len(explored.methods)]
lines += [f"| {key} | " + " | ".join(f"{trust[key][m]:.2f}" for m in explored.methods) + " |" for key in models]
display(Markdown("\n".join(lines)))
lowest = min(value for row in trust.values() for value in row.values())
expect(lowest < 0.99, "no 2-D map keeps every neighbourhood of the feature space",
       f"the least trustworthy map scores {lowest:.2f}")

# %% [markdown]
# ## 4. Separation, measured in the feature space
#
# Four numbers per model on the clean features and on their PGD-10 copies at $\epsilon = 0.1$
# (no map involved): the intra/inter-class distance ratio (smaller is tighter), the Fisher
# criterion (larger is better separated), the silhouette (in $[-1, 1]$, larger is better) and the
# mean margin to the nearest other-class centre (class means; in the model's own feature units).
#
# The models' feature spaces differ (200-d for the small CNN, 1,024-d for LeNet+, 16-d for DRP,
# different scales), so compare each model with *itself*: how much does the attack degrade its
# separation? The last column is the silhouette's change.

# %%
lines = ["| model | d | intra/inter clean -> adv | Fisher clean -> adv | silhouette clean -> adv | margin clean -> adv "
         "| silhouette change |", "|---|---|---|---|---|---|---|"]
change, clean_silhouette = {}, {}
for key in models:
    feats = explored.features[key][("pgd-10", 0.1)]
    clean, adv = separation_metrics(feats.clean, feats.labels), separation_metrics(feats.adversarial, feats.labels)
    change[key], clean_silhouette[key] = adv["silhouette"] - clean["silhouette"], clean["silhouette"]
    cells = [f"{clean[m]:.2f} -> {adv[m]:.2f}" for m in ("intra/inter ratio", "Fisher criterion", "silhouette",
                                                         "mean margin")]
    lines.append(f"| {key} | {feats.dim} | " + " | ".join(cells) + f" | {change[key]:+.2f} |")
display(Markdown("\n".join(lines)))
expect(change["ce"] < change["pgd_at"] - 0.05, "the attack degrades the standard model's separation more than "
       "PGD-AT's", f"silhouette change: ce {change['ce']:+.2f}, pgd_at {change['pgd_at']:+.2f}")
tightest = max(clean_silhouette, key=clean_silhouette.get)
expect(change[tightest] < change["pgd_at"] - 0.05, "the best-separated clean features are not the most robust ones: "
       "the model with the highest clean silhouette loses more of it under attack than PGD-AT",
       f"{tightest}: silhouette {clean_silhouette[tightest]:.2f}, change {change[tightest]:+.2f}; "
       f"pgd_at: {clean_silhouette['pgd_at']:.2f}, change {change['pgd_at']:+.2f}")

# %% [markdown]
# ## 5. Bring your own model
#
# Everything above works on a model of your own: `robustviz.models.wrap` turns any `nn.Module`
# into a model with robustviz's contract, split at a layer you name: `features(x)` is that layer's
# output (flattened), `head(z)` the rest of the network, `forward(x) = head(features(x))`. The
# normalisation becomes a layer inside the model, so inputs stay in $[0, 1]$ and the eps-ball
# $\|x' - x\|_\infty \le \epsilon$ is measured in pixels. Here a torchvision ResNet-18 (its first
# convolution swapped for a 1-channel one), trained for a few dozen steps: enough to show the path,
# not a good model.

# %%
import torch
from torch import nn
from torchvision.models import resnet18

from robustviz.evaluate import evaluate_robustness
from robustviz.models import wrap

torch.manual_seed(SEED)
net = resnet18(weights=None, num_classes=10)
net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # grey images: 1 input channel
mine = wrap(net, features="avgpool", mean=bundle.mean, std=bundle.std)
optimiser = torch.optim.Adam(mine.parameters(), lr=1e-3)
mine.train()
for step in range(course.pick(40, 300)):
    batch = torch.randint(len(bundle.train), (64,), generator=torch.Generator().manual_seed(step))
    loss = nn.functional.cross_entropy(mine(bundle.train.x[batch]), bundle.train.y[batch])
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
mine.eval()
report = evaluate_robustness(mine, bundle.test.x[:200], bundle.test.y[:200], eps=(0.1,), attacks=("fgsm", "pgd-10"),
                             progress=False)
print(report.table("ResNet-18 (torchvision), wrapped at avgpool"))

# %%
expect(report.clean_acc > 0.5 and report.results[0.1]["PGD-10"] < report.clean_acc,
       "a torchvision ResNet-18 wrapped with models.wrap trains, is attacked and evaluated like a robustviz model",
       f"clean {100 * report.clean_acc:.1f} %, PGD-10 at eps 0.1 {100 * report.results[0.1]['PGD-10']:.1f} %")

# %% [markdown]
# Its layers keep their names under `net.` (`viz.layer_names(mine)`), so `extract` reads any of
# them, and the explorer takes the wrapped model like any other:

# %% tags=["widget"]
feats = viz.extract(mine, bundle, layer="net.layer3", attack="fgsm", eps=0.1, n=150)
print(feats)
viz.explorer({"resnet18": mine}, bundle, attacks=("fgsm",), eps_values=(0.0, 0.1), methods=("pca",), n=150,
             seed=SEED, progress=False)

# %% [markdown]
# From the command line the same model is evaluated through a function that returns it:
# `robustviz evaluate --model mine:resnet --dataset mnist-mini`, where `mine.py` holds
# `def resnet(): ...; return wrap(net, features="avgpool", mean=..., std=...)`.

# %% [markdown]
# ## Exercises
#
# 1. **Pick a pair.** In the explorer, choose `ce` and then `pgd_at`, attack `fgsm`, map `lda`, and
#    move eps from 0 to 0.3. Where do the adversarial points of each model go: into one class,
#    into the middle, or do they stay?
# 2. **Only two classes.** Use the class filter to show only "4" and "9". Which model keeps them
#    apart under attack?
# 3. **A prototype model.** If notebook 04 ran, the 3-D DRP model is cached
#    (`course.train("drp", feat_dim=3)`). Open `viz.prototype_explorer` on it.

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** For the standard model the crosses leave their class cluster at small eps and
# land in other clusters (the arrows cross the map); under FGSM the pseudo-robust `fgsm_at` looks
# like `pgd_at`, under PGD-10 like `ce`; for the adversarially trained model most crosses stay in
# or near their own cluster up to the training budget. Remember that the map was fitted on clean
# features: an adversarial point placed "between" clusters may be anywhere in the 200-d space.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
pair_kept = {}
for key in models:
    feats = explored.features[key][("pgd-10", EPS)]
    pair = np.isin(feats.labels.numpy(), [4, 9])
    kept = (feats.pred_adv[pair] == feats.labels[pair]).float().mean()
    print(f"{key:<15} 4s and 9s still correct under PGD-10 at eps {EPS}: {100 * kept:.0f}%")
    pair_kept[key] = float(kept)
expect(pair_kept["pgd_at"] > 0.5 and pair_kept["ce"] < 0.05 and pair_kept["fgsm_at"] < 0.05,
       "PGD-AT keeps most 4s and 9s apart; the standard and the pseudo-robust model keep none",
       f"pgd_at {100 * pair_kept['pgd_at']:.0f} %, ce {100 * pair_kept['ce']:.0f} %, "
       f"fgsm_at {100 * pair_kept['fgsm_at']:.0f} %")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** Read the list: the models trained with multi-step attacks (`pgd_at`, `gce_at`,
# `adr`) keep most 4s and 9s apart; the standard and pseudo-robust models keep none or few. These two digits are among the closest pairs of MNIST, so they are the first
# to merge under attack.

# %% tags=["solution", "widget"] jupyter={"source_hidden": true}
# @title Solution 3
sphere_model, _ = course.train("drp", feat_dim=3, progress=False)
viz.prototype_explorer(sphere_model, bundle, attacks=("fgsm",), eps_values=(0.0, 0.1, 0.2), n=150, seed=SEED,
                       progress=False, name="drp, d = 3")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** On the map of the sphere the clean features sit near their prototypes (stars);
# as eps grows the crosses slide along the sphere towards the *nearest* other prototype, the
# neighbouring region of the rule.

# %% [markdown]
# ## Self-check
#
# 1. A 2-D map shows two classes overlapping. Can you conclude that they overlap in feature space?
# 2. Why compare a model's separation metrics clean against adversarial, rather than one model's
#    silhouette against another's?
# 3. Under FGSM at $\epsilon = 0.3$, `fgsm_at` keeps most points home. Is it robust?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: no: check the map's trustworthiness, and measure in the feature space (the
# metrics table). 2: the models' feature spaces have different dimensions and scales; a model's
# change under attack is comparable, raw values across spaces are not. 3: no: under PGD-10 its
# points leave their classes; FGSM is the attack it learned to make weak.

# %% [markdown]
# ## Summary
#
# * The explorer puts every cached model side by side; all the expensive work is done once.
# * A 2-D map is a summary with a trustworthiness score; separation metrics in the feature space
#   itself are the numbers to compare.
# * A click shows what is behind a point; linked views compare two models on the same points; and
#   `models.wrap` brings any `nn.Module` into the same tools.
# * The course in one picture: under a multi-step attack, standard and pseudo-robust models let
#   the attack carry points across classes and adversarial training keeps most of them home;
#   under FGSM alone the pseudo-robust ones look robust too, which is why the attack must be
#   named next to every number.
#
# Next: [10 · The robustness-accuracy trade-off](10_trades_tradeoff.ipynb).
