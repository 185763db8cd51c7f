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
# # 00 · A tour of robustviz
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/00_tour.ipynb)
#
# **Prerequisites:** Python and PyTorch basics (tensors, `nn.Module`); no earlier notebook.
# **Student time:** about 30 minutes, plus about a minute of training on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. check that your environment is ready (`robustviz doctor`);
# 2. load a dataset and say what the images look like as tensors (values in $[0, 1]$);
# 3. name the one contract every model follows: `features(x)` $\to z$, `head(z)` $\to$ scores;
# 4. train a recipe once and get it back from the cache in later notebooks;
# 5. recognise the errors robustviz raises for the classic mistakes (pixels in 0-255, eps in 0-255 units).
#
# Every notebook in this course runs on a laptop CPU in the `quick` profile (a few minutes),
# on Colab (with or without a GPU) and on Binder. The code cells only *call* the package;
# everything they call is documented in `help(...)`.

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
N_TRAIN = None  # None: every training image (8,000 in mnist-mini); a number trains on a subset

# %%
# %matplotlib inline
import torch

from robustviz import methods, models, viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.app.doctor import doctor
from robustviz.attacks import fgsm, pgd
from robustviz.evaluate import accuracy
from robustviz.evaluate.intervals import format_accuracy

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)  # ROBUSTVIZ_PROFILE, ROBUSTVIZ_SEED, ... override these

# %% [markdown]
# ## 1. Install check
#
# `robustviz doctor` (also on the command line) lists the versions of robustviz and its
# dependencies, the device (a CUDA GPU or the CPU), whether interactive widgets can display,
# and where the embedded dataset `mnist-mini` was found. Everything marked *optional* only
# adds features (UMAP maps, AutoAttack, widgets); the course runs without them.

# %%
report = doctor()
expect(report["ok"], "robustviz and everything the course needs are installed", "robustviz doctor: all checks passed",
       why="robustviz doctor names the missing piece; reinstall with `pip install robustviz` or `make demo`.")

# %% [markdown]
# ## 2. Data
#
# `course.data()` loads the course dataset: `mnist-mini` is a 10,000-image subset of MNIST
# shipped with robustviz (8,000 train / 2,000 test); the course trains on all 8,000 (set
# `N_TRAIN` for a subset). Images are float tensors in $[0, 1]$ with shape `[N, C, H, W]`.
# Normalisation (subtracting the mean, dividing by the std) happens *inside* the model, so an
# attack's budget $\epsilon$ is always in pixel units: $\epsilon = 0.3$ means "every pixel may
# move by at most 0.3 of the full range".

# %%
bundle = course.data()
print(bundle)
x_all = bundle.train.x
print("training images:", tuple(x_all.shape), x_all.dtype, "with values in", [float(x_all.min()), float(x_all.max())])
print("classes:", bundle.classes, "| the dataset's conventional budget eps =", bundle.eps)
expect(float(x_all.min()) >= 0 and float(x_all.max()) <= 1, "images are float tensors with values in [0, 1]",
       f"min {float(x_all.min()):.2f}, max {float(x_all.max()):.2f}, dtype {x_all.dtype}")

# %% tags=["plot"]
viz.plot_image_grid({"test": bundle.test.x[:10]}, {"test": bundle.test.y[:10]}, bundle.classes)

# %% [markdown]
# ## 3. Models: one contract
#
# Every model is `normalize -> body -> head`:
#
# $$z = \texttt{features}(x) \in \mathbb{R}^{d}, \qquad s = \texttt{head}(z) \in \mathbb{R}^{K}, \qquad \texttt{forward}(x) = \texttt{head}(\texttt{features}(x)).$$
#
# The methods of this course act on $z$ (they pull it towards prototypes, clusters or its clean
# copy), and attacks always attack `forward`, the real decision rule. The architectures:

# %%
for name, (_, description) in models.ARCHITECTURES.items():
    print(f"{name:<16} {description}")

net = models.build("smallcnn", bundle.num_classes, bundle.in_channels, mean=bundle.mean, std=bundle.std, seed=SEED)
x, y = bundle.test.x[:8], bundle.test.y[:8]
z = net.features(x)
print("features:", tuple(z.shape), "| scores:", tuple(net.head(z).shape))
expect(torch.allclose(net(x), net.head(z)), "forward(x) is head(features(x))",
       f"z has shape {tuple(z.shape)}, the scores {tuple(net.head(z).shape)}")

# %% [markdown]
# ## 4. Recipes, training and the cache
#
# A *recipe* is a method (its loss and training-time attack) plus its settings for each
# dataset family and profile. The list (also `robustviz train --list`):

# %%
for key, summary in methods.list_recipes():
    print(f"{key:<15} {summary}")

# %% [markdown]
# `course.train(key)` trains a recipe with its settings for the profile and caches it under
# `results/` (keyed by recipe, dataset, profile, seed, training-set size and any changed
# setting). The first call trains (the progress bar shows the loss and the held-out clean and PGD
# accuracy); every later call, in this notebook or the next, loads the finished checkpoint in a
# second. These are the same runs as `robustviz compare` and the results table in
# `docs/results-quick.md`.

# %%
ce_model, ce_history = course.train("ce")
print("cached in", course.path("ce"))
test = course.test_split(bundle)
clean = accuracy(ce_model, test.x, test.y)
print("clean test accuracy:", format_accuracy(clean, len(test)))
expect(clean > 0.9, "the standard model classifies more than 90 % of the test images correctly",
       format_accuracy(clean, len(test)), why="a subset (N_TRAIN) or fewer epochs train a weaker model.")

# %% tags=["plot"]
viz.plot_training_curves({"ce": ce_history})

# %% [markdown]
# ## 5. The contracts, tested
#
# robustviz checks its inputs so the classic mistakes fail loudly. Images in 0-255 instead of
# $[0, 1]$, and an eps in 0-255 units, raise an error that says what to do:

# %%
refused = []
for mistake, call in [("images in 0-255", lambda: fgsm(ce_model, x * 255, y, eps=0.3)),
                      ("eps in 0-255 units", lambda: fgsm(ce_model, x, y, eps=76))]:
    try:
        call()
    except ValueError as err:
        refused.append(mistake)
        print(f"{mistake}: ValueError: {err}\n")
expect(len(refused) == 2, "both mistakes are refused with a message that says what to do", ", ".join(refused))

# %% [markdown]
# And every attack returns an input inside the $\epsilon$-ball and inside $[0, 1]$,
# runs the model in eval mode and gives the caller's mode back:

# %%
ce_model.train()
x_adv = pgd(ce_model, x, y, eps=0.3, steps=20, seed=SEED)
still_training = ce_model.training
ce_model.eval()
distance = float((x_adv - x).abs().max())
print(f"max |x_adv - x| = {distance:.4f}, values in [{float(x_adv.min())}, {float(x_adv.max())}], "
      f"model still in train mode after the attack: {still_training}")
expect(distance <= 0.3 + 1e-6 and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1 and still_training,
       "the attack stays in the eps-ball and in [0, 1], and gives the model its mode back",
       f"max |x_adv - x| = {distance:.4f} <= 0.3")

# %% [markdown]
# ## 6. A first look at the feature space
#
# `viz.extract` runs the model on test images (and their adversarial copies) and keeps the
# features $z$; `viz.plot_embedding` draws a 2-D map of them. Dots are clean images, crosses
# their FGSM copies, grey arrows join each pair, black rings mark misclassified points.

# %% tags=["plot"]
feats = viz.extract(ce_model, bundle, attack="fgsm", eps=0.2, n=course.pick(300, 1000), seed=SEED)
viz.plot_embedding(feats, method="pca", classes=bundle.classes)

# %%
moved = float((feats.pred_adv != feats.labels).float().mean())
expect(moved > 0.3, "FGSM at eps 0.2 carries a large share of the points into another class's region",
       f"{100 * moved:.0f} % of the {len(feats.labels)} mapped test images are misclassified under FGSM")

# %% [markdown]
# ## Exercises
#
# 1. **Two dimensions, no map needed.** The toy dataset `"blobs"` has 2-D inputs and its
#    recipes give the model 2-D features. Train `ce` on it (`course.train("ce", dataset="blobs")`)
#    and draw the features themselves with `viz.plot_feature_space`, under FGSM at the toy's eps.
# 2. **Where does a run live?** Which folder would `pgd_at` be cached in with these settings,
#    and which with `epochs=2`? Why do they differ?
# 3. **The eval-mode contract.** Why must an attack run the model in eval mode (think of
#    BatchNorm and dropout), and why must it give the caller's mode back?
#
# The solutions are in the collapsed cells below (click to expand).

# %% tags=["solution", "plot"] jupyter={"source_hidden": true}
# @title Solution 1
toy = course.data("blobs")
toy_model, _ = course.train("ce", dataset="blobs", progress=False)
viz.plot_feature_space(viz.extract(toy_model, toy, attack="fgsm", eps=toy.eps, n=300), classes=toy.classes)

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** With 2-D features there is no map to trust or distrust: the figure *is* the
# feature space. The three classes form three groups; the FGSM crosses move from each group
# towards its neighbours, and the points closest to another group are the ones that cross over.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
print(course.path("pgd_at"))
print(course.path("pgd_at", epochs=2))

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** Every setting that changes the trained weights is part of the cache key (a hash of
# the changed settings), so the 2-epoch run lives in its own folder: it can never overwrite, or
# be mistaken for, the default run, which the results table and every notebook share.

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Solution 3.** In train mode BatchNorm normalises with the statistics of the current batch
# (and updates its running statistics) and dropout drops random units: the attacked function
# would not be the classifier that is evaluated, and crafting an attack would silently change
# the model. Giving the mode back matters inside training loops: adversarial training crafts
# its examples in eval mode and must then take its optimiser step in train mode.

# %% [markdown]
# ## Self-check
#
# 1. An image has pixel values up to 255. What will `fgsm` say, and what should you do?
# 2. Which two calls give the same scores: `model(x)`, `model.head(model.features(x))`,
#    `model.features(model.head(x))`?
# 3. You trained `pgd_at` yesterday. What happens when you call `course.train("pgd_at")` today?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: it refuses, saying the values look like 0-255 pixels; divide by 255 (the
# normalisation belongs inside the model). 2: the first two; the third does not even type-check
# (the head takes features). 3: the cached run is loaded in a second, nothing is retrained.

# %% [markdown]
# ## Summary
#
# * `robustviz doctor` checks the environment; `runs.setup` reads the notebook parameters
#   (and the `ROBUSTVIZ_*` environment variables) and says where runs are cached.
# * Data are tensors in $[0, 1]$; eps is in pixel units; normalisation lives in the model.
# * Every model is `features -> head`; attacks attack `forward`, the real decision rule.
# * `course.train(recipe)` trains once and caches; later notebooks reuse the run.
#
# Next: [01 · Attacks](01_attacks.ipynb), FGSM and PGD on this standard model.
