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
# # 04 · Deep Repulsive Prototypes: fixed geometry in feature space
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/robustviz-org/robustviz/blob/main/notebooks/04_repulsive_prototypes.ipynb)
#
# **Prerequisites:** notebooks 00-01; vectors, angles and cosine similarity.
# **Student time:** about 45 minutes, plus about 2 minutes of training on a laptop CPU.
#
# **Learning objectives.** After this notebook you can
#
# 1. construct class prototypes that are as far apart as possible, and say what the best
#    possible separation is ($\arccos(-1/(K-1))$);
# 2. explain DRP's training (regress the features onto the label's prototype) and its decision
#    rule (the most similar normalised prototype);
# 3. look at 2-D and 3-D feature spaces directly and see where attacks push the features;
# 4. explain why an attack on DRP's *training loss* can overestimate its robustness.

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

from robustviz import viz
from robustviz.app import runs
from robustviz.app.claims import expect
from robustviz.evaluate import evaluate_robustness, ladder
from robustviz.evaluate.intervals import format_accuracy
from robustviz.methods.drp import make_prototypes
from robustviz.viz import prototype_angles

course = runs.setup(PROFILE, SEED, DATASET, N_TRAIN)
bundle = course.data()
test = course.test_split(bundle, course.pick(500, 2000))

# %% [markdown]
# ## 1. Prototypes, chosen before training
#
# DRP (Serban, Poll & Visser 2021, [arXiv:2105.12427](https://arxiv.org/abs/2105.12427)), after
# Hyperspherical Prototype Networks (Mettes et al. 2019), fixes one vector $p_c \in \mathbb{R}^d$
# per class *before* training and pushes them apart. For unit vectors the best one can do is the
# regular simplex: any $K$ unit vectors have some pair with cosine at least $-1/(K-1)$, so the
# smallest pairwise angle is at most
#
# $$\theta^\star = \arccos\!\Big(-\frac{1}{K-1}\Big) \qquad (120^\circ \text{ for } K = 3,\ 96.4^\circ \text{ for } K = 10),$$
#
# reachable when $d \ge K - 1$. robustviz builds four kinds: `simplex` (exact), `sphere`
# (optimised on the unit sphere; reaches the simplex when $d \ge K-1$), `cube` (corners of the
# hypercube) and `faithful`, the released generator, which maximises the sum of pairwise
# $L_\infty$ distances *without any norm constraint*.

# %%
geometry = {}
for kind in ("simplex", "sphere", "cube", "faithful"):
    geometry[kind] = angles = prototype_angles(make_prototypes(kind, 10, 16, seed=SEED))
    print(f"{kind:<9} K = 10, d = 16: smallest angle {angles['min_angle']:6.1f} deg, mean {angles['mean_angle']:6.1f} "
          f"(optimum {angles['optimal_angle']:.1f})")
expect(abs(geometry["sphere"]["min_angle"] - geometry["sphere"]["optimal_angle"]) < 0.5,
       "the optimised sphere prototypes reach the simplex's smallest angle (d >= K - 1)",
       f"{geometry['sphere']['min_angle']:.1f} against the optimum {geometry['sphere']['optimal_angle']:.1f} deg")
expect(geometry["faithful"]["min_angle"] < geometry["sphere"]["min_angle"] - 10,
       "the released generator's prototypes are far from the optimum",
       f"smallest angle {geometry['faithful']['min_angle']:.1f} deg")

# %% [markdown]
# The geometry panels (pairwise angles, smallest and mean angle against the optimum, norms):
# well-posed `sphere` prototypes, then the `faithful` ones, whose norms are wildly unequal, so
# $\arg\max_c \langle z, p_c\rangle$ is no longer a nearest-prototype rule.

# %% tags=["plot"]
viz.plot_prototype_geometry(make_prototypes("sphere", 10, 16, seed=SEED))

# %% tags=["plot"]
viz.plot_prototype_geometry(make_prototypes("faithful", 10, 16, seed=SEED))

# %% [markdown]
# ## 2. Training and prediction
#
# The network's features $z = f(x)$ (a linear layer of size $d$) are regressed onto the label's
# prototype; robustviz's `drp` uses the per-sample cosine loss of HPN and predicts with the most
# similar normalised prototype:
#
# $$\mathcal{L} = \frac{1}{B}\sum_{i}\big(1 - \cos(z_i, p_{y_i})\big)^2, \qquad
# \hat y(x) = \arg\max_c\, \Big\langle \frac{z}{\|z\|_2},\, p_c \Big\rangle .$$
#
# No term pushes $z$ *away* from the wrong prototypes and there is no adversarial training: the
# repulsion lives only in the choice of the prototypes. The prototypes are a buffer of the
# model's head, so the head *is* the decision rule and every attack attacks it.
#
# ## 3. Two dimensions: the toy `blobs`
#
# Three classes, 2-D inputs, a small MLP with 2-D features: the prototypes are three unit
# vectors at $120^\circ$ and the features can be drawn as they are (stars: the prototypes;
# features normalised onto the unit circle, the space the rule compares in). Crosses are the
# PGD-20 copies at twice the toy's budget.

# %% tags=["plot"]
toy = course.data("blobs")
toy_model, _ = course.train("drp", dataset="blobs")
toy_feats = viz.extract(toy_model, toy, attack="pgd-20", eps=2 * toy.eps, n=300, seed=SEED)
viz.plot_feature_space(toy_feats, model=toy_model, classes=toy.classes)

# %%
toy_clean = float((toy_feats.pred_clean == toy_feats.labels).float().mean())
expect(toy_clean > 0.85, "on the toy most features gather at their class's prototype (the blobs overlap a little)",
       f"clean accuracy {format_accuracy(toy_clean, len(toy_feats.labels))}")

# %% [markdown]
# ## 4. Three dimensions: MNIST on a sphere
#
# The same recipe on `mnist-mini` with 3-D features (`feat_dim=3`): ten prototypes spread over
# the unit sphere (the simplex needs $d \ge 9$, so the `sphere` construction optimises the
# spread). The sphere is drawn as a map, longitude against latitude of $z / \|z\|$ (like a
# world map: nothing hides behind the sphere). Under FGSM at $\epsilon = 0.15$ the features slide
# along the sphere towards a neighbouring prototype.

# %% tags=["plot"]
sphere_model, _ = course.train("drp", feat_dim=3)
sphere_feats = viz.extract(sphere_model, test, attack="fgsm", eps=0.15, n=150, seed=SEED)
viz.plot_feature_space(sphere_feats, model=sphere_model, classes=bundle.classes, max_arrows=80)

# %%
sphere_clean = float((sphere_feats.pred_clean == sphere_feats.labels).float().mean())
sphere_fgsm = float(((sphere_feats.pred_adv == sphere_feats.labels) & (sphere_feats.pred_clean == sphere_feats.labels))
                    .float().mean())
expect(sphere_clean - sphere_fgsm > 0.2, "FGSM at eps 0.15 carries many features to a neighbouring prototype",
       f"clean {format_accuracy(sphere_clean, len(sphere_feats.labels))}, under FGSM "
       f"{format_accuracy(sphere_fgsm, len(sphere_feats.labels))}")

# %% [markdown]
# Move the slider: the features of the 3-D model under growing $\epsilon$ (in a live kernel this
# is a widget; elsewhere it shows one static figure per $\epsilon$).

# %% tags=["widget"]
sphere_explorer = viz.prototype_explorer(sphere_model, bundle, attacks=("fgsm",), eps_values=(0.0, 0.05, 0.1, 0.15, 0.2),
                                         n=course.pick(150, 500), seed=SEED, name="drp, d = 3")
sphere_explorer

# %% [markdown]
# The same explorer as a static figure (for a printed or static copy of this notebook): the
# largest $\epsilon$ of the slider.

# %% tags=["plot"]
sphere_explorer.static_figures()[-1]

# %% [markdown]
# ## 5. The recipe's own model ($d = 16$): how robust is it?
#
# The margin histogram measures, per test point, the distance to the nearest decision boundary
# of the prototype rule (positive: correct side). Clean points sit far inside their region;
# PGD-20 at $\epsilon = 0.3$ pushes most of them past it.

# %% tags=["plot"]
model, _ = course.train("drp")
feats = viz.extract(model, test, attack="pgd-20", eps=EPS, n=course.pick(300, 1000), seed=SEED)
viz.plot_separation(feats, model)

# %%
drp_report = evaluate_robustness(model, test.x, test.y, eps=(EPS,), attacks=("pgd-20",), seed=SEED, progress=False)
expect(drp_report.clean_acc > 0.95, "DRP is an accurate classifier", format_accuracy(drp_report.clean_acc, drp_report.n))
expect(drp_report.results[EPS]["PGD-20"] < 0.05, f"without adversarial training it is not robust at eps = {EPS}",
       "PGD-20 " + format_accuracy(drp_report.results[EPS]["PGD-20"], drp_report.n))

# %% [markdown]
# The released DRP evaluation attacked the *training loss* (the $L_\infty$ distance to the true
# prototype). That loss can grow without moving towards any other class, so it can be a weak
# attack (exercise 3 measures it).
# Here every attack maximises a loss of the *scores* $\langle z/\|z\|, p_c\rangle$, which is what
# decides. The attack ladder at $\epsilon = 0.1$:

# %% tags=["plot"]
report = ladder(model, test, 0.1, attacks=("fgsm", "pgd-20", "pgd-50-margin", "adaptive-50"), n=course.pick(200, 1000),
                seed=SEED, progress=False)
print(report.table())
viz.plot_ladder(report)

# %%
expect(report.worst_case < report.accuracy("FGSM") - 0.05,
       "at eps 0.1 the iterative attacks break at least 5 points more than FGSM (the same images, paired)",
       f"worst case over the ladder {format_accuracy(report.worst_case, report.n)}, FGSM "
       f"{format_accuracy(report.accuracy('FGSM'), report.n)}")

# %% [markdown]
# ## Exercises
#
# 1. **How many dimensions does the simplex need?** For $K = 10$, compute the smallest angle of
#    `sphere` prototypes in $d = 2, 3, 5, 9, 16$. From which $d$ on is the optimum reached?
# 2. **The released prototypes.** For $K = 100$ classes in $d = 100$ (CIFAR-100), how small is the
#    smallest angle between two `faithful` prototypes? What does that mean for the rule?
# 3. **Attack the loss, not the rule.** The released DRP (`drp_faithful`: $L_\infty$ regression
#    onto the unbounded prototypes) was evaluated with PGD on its *training loss*
#    $\|f(x) - p_y\|_\infty$. Compare that attack with PGD on the scores at $\epsilon = 0.1$.
#    Hint: `torch.nn.Sequential(model.normalize, model.body)` computes the features, and `pgd`
#    accepts any per-sample loss `(outputs, y) -> [B]` to maximise.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 1
for d in (2, 3, 5, 9, 16):
    angles = prototype_angles(make_prototypes("sphere", 10, d, seed=SEED))
    print(f"d = {d:2d}: smallest angle {angles['min_angle']:5.1f} deg (optimum {angles['optimal_angle']:.1f})")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 1.** The optimum $\arccos(-1/9) = 96.4^\circ$ is reached from $d = K - 1 = 9$ on (the
# regular simplex fits in 9 dimensions); below it the ten prototypes cannot all be that far apart,
# and in $d = 2$ the best is $36^\circ$ (ten points evenly on a circle).

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 2
angles = prototype_angles(make_prototypes("faithful", 100, 100, seed=SEED, steps=100))
print(f"K = 100, d = 100, faithful: smallest angle {angles['min_angle']:.1f} deg, "
      f"optimum {angles['optimal_angle']:.1f} deg")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 2.** The smallest angle printed above is far below the optimum of about $90.6^\circ$:
# two of the released prototypes point in almost the same direction, so a tiny change of $z$ flips
# the prediction between those two classes, and with unequal norms some prototypes are not even
# classified as their own class by the released rule.

# %% tags=["solution"] jupyter={"source_hidden": true}
# @title Solution 3
from robustviz.attacks import pgd
from robustviz.evaluate import predict

faithful, _ = course.train("drp_faithful", progress=False)
features, prototypes = torch.nn.Sequential(faithful.normalize, faithful.body), faithful.head.prototypes


def training_loss(z, y):  # the released loss, per sample: || f(x) - p_y ||_inf
    return (z - prototypes[y]).abs().amax(dim=1)


xs, ys = test.x[:200], test.y[:200]
print(f"clean accuracy {format_accuracy(float((predict(faithful, xs) == ys).float().mean()), len(ys))}")
attacked = {}
for name, target, loss in (("the training loss", features, training_loss), ("the scores (CE)", faithful, "ce")):
    x_adv = pgd(target, xs, ys, eps=0.1, steps=20, loss=loss, seed=SEED)
    attacked[name] = float((predict(faithful, x_adv) == ys).float().mean())
    print(f"PGD-20 on {name}: accuracy {format_accuracy(attacked[name], len(ys))}")

# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answer 3.** Compare the two accuracies printed above: where the attack on the training loss
# leaves more images correct than the attack on the scores, an evaluation based on it
# over-reports robustness. The training loss's gradient flows through one output coordinate per
# sample (the $L_\infty$ maximum) and can grow without moving towards any other class's prototype:
# only an attack on the decision rule measures what decides.

# %% [markdown]
# ## Self-check
#
# 1. What is the largest possible smallest angle between 4 unit vectors in 3-D, and which
#    solid's corners reach it?
# 2. Why must DRP's features come from a linear layer, not a ReLU?
# 3. DRP's cosine loss has no term that pushes $z$ away from the wrong prototypes. Where does the
#    "repulsion" of the method's name live?
#
# %% [markdown] tags=["solution"] jupyter={"source_hidden": true}
# **Answers.** 1: $\arccos(-1/3) = 109.5^\circ$, the regular tetrahedron (the simplex for $K = 4$,
# $d = 3$). 2: the prototypes have negative coordinates, which a ReLU output can never reach.
# 3: only in the placement of the prototypes before training; the training itself only pulls.

# %% [markdown]
# ## Summary
#
# * Prototypes can be placed optimally before training: the regular simplex reaches the best
#   smallest angle $\arccos(-1/(K-1))$ when $d \ge K - 1$; the released generator does not
#   (unequal norms, nearly collinear directions for many classes).
# * DRP pulls features onto prototypes but nothing pushes them away from the others, and there is
#   no adversarial training: under attacks on the decision rule its robustness is that of a
#   standard model at large budgets.
# * Evaluate a model with attacks on its *decision rule*; a loss that can grow without crossing a
#   boundary can make a weak attack.
#
# Next: [05 · Clustering and the Magnet loss](05_clustering_magnet.ipynb).
