"""Feature extraction: what a layer of the model computes on clean and adversarial inputs.

``extract`` runs the model once over (a stratified subset of) the data, batched on the
model's device, and keeps the features of one layer, the labels and the predictions; with
an ``attack`` it does the same for the adversarial copies. Any named submodule can be read
through a forward hook; the default is ``model.features``, the representation the methods
act on.

Example:
    >>> feats = extract(model, bundle, attack="pgd-20", eps=0.3, n=1000)  # doctest: +SKIP
    >>> feats.clean.shape, feats.adversarial.shape  # doctest: +SKIP
    (torch.Size([1000, 200]), torch.Size([1000, 200]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_inputs, nearest_names_error
from ..attacks.core import ATTACK_BATCH_SIZE, eval_mode
from ..data import DataBundle, Split, stratified_indices
from ..evaluate.core import labels_from_scores
from ..models import features_of  # noqa: F401  (part of the viz API: features of a model, batched)

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Features:
    """Features of one layer for ``N`` inputs, clean and (optionally) adversarial; CPU tensors.

    Attributes:
        clean: ``[N, d]`` float32 features of the clean inputs (flattened).
        labels: ``[N]`` true labels.
        pred_clean: ``[N]`` the model's predictions on the clean inputs.
        adversarial: ``[N, d]`` features of the adversarial inputs, or ``None``.
        pred_adv: ``[N]`` predictions on the adversarial inputs, or ``None``.
        layer: the layer read (``"features"`` for ``model.features``).
        attack: the attack's name, or ``None``. eps: its budget, or ``None``.
        inputs, adversarial_inputs: ``[N, C, H, W]`` float16 images in [0, 1] (only with
            ``extract(..., keep_inputs=True)``, else ``None``), for showing a point's image.
        probs_clean, probs_adv: ``[N, K]`` softmax of the model's scores (with ``keep_inputs``).
    """

    clean: torch.Tensor
    labels: torch.Tensor
    pred_clean: torch.Tensor
    adversarial: torch.Tensor | None = None
    pred_adv: torch.Tensor | None = None
    layer: str = "features"
    attack: str | None = None
    eps: float | None = None
    inputs: torch.Tensor | None = None
    adversarial_inputs: torch.Tensor | None = None
    probs_clean: torch.Tensor | None = None
    probs_adv: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        """The feature dimension ``d``."""
        return self.clean.shape[1]

    def __len__(self) -> int:
        return self.clean.shape[0]

    def __repr__(self) -> str:
        attacked = f", attack={self.attack!r}, eps={self.eps:.4g}" if self.adversarial is not None and \
            self.eps is not None else (f", attack={self.attack!r}" if self.adversarial is not None else "")
        return f"Features(layer={self.layer!r}, n={len(self)}, dim={self.dim}{attacked})"


def extract(
    model: nn.Module,
    data: DataBundle | Split | tuple[torch.Tensor, torch.Tensor],
    layer: str | None = None,
    attack: str | AttackFn | None = None,
    eps: float | None = None,
    n: int | None = 1000,
    batch_size: int = ATTACK_BATCH_SIZE,
    seed: int = 0,
    keep_inputs: bool = False,
) -> Features:
    """Features of ``layer`` for ``n`` clean inputs and, with ``attack``, their adversarial copies.

    Args:
        model: a ``RobustModel`` (any ``nn.Module`` with ``features``/``head`` works for
            ``layer=None``; any module for a named layer). Its device is used.
        data: a ``DataBundle`` (its test split is used), a ``Split`` or ``(x, y)``.
        layer: ``None`` for ``model.features``, or a name from ``layer_names(model)``
            (e.g. ``"body.0.7"``); its output is flattened to ``[N, d]``.
        attack: an attack spec for ``robustviz.attacks.make_attack`` (``"fgsm"``,
            ``"pgd-20"``, ...) or a function ``(model, x, y) -> x_adv`` (e.g.
            ``make_attack("pgd-20", 0.3)`` or ``functools.partial(fgsm, eps=0.3)``).
        eps: the attack budget for a spec (default: the bundle's ``eps``).
        n: how many inputs (a stratified, seeded subset; ``None`` for all).
        batch_size: inputs per forward pass (and per attack call).
        seed: seed of the subset and of the attack's random start.
        keep_inputs: also keep the images (float16) and the softmax of the scores, for
            inspecting single points (``robustviz.viz.inspection``).

    Returns:
        ``Features`` on the CPU.

    Example:
        >>> feats = extract(model, bundle, layer="body.0.11", n=500)  # doctest: +SKIP
    """
    x, y = _inputs(model, data, n, seed)
    attack_fn, attack_name, eps = _resolve_attack(attack, eps, data, seed)
    clean, pred_clean, scores = _outputs(model, x, layer, batch_size)
    out = Features(clean=clean, labels=y.cpu(), pred_clean=pred_clean, layer=layer or "features",
                   attack=attack_name, eps=eps)
    if keep_inputs:
        out.inputs, out.probs_clean = x.cpu().half(), scores.softmax(1)
    if attack_fn is not None:
        x_adv = torch.cat([attack_fn(model, x[i: i + batch_size].to(_device(model)),
                                     y[i: i + batch_size].to(_device(model))).cpu()
                           for i in range(0, len(x), batch_size)])
        out.adversarial, out.pred_adv, scores = _outputs(model, x_adv, layer, batch_size)
        if keep_inputs:
            out.adversarial_inputs, out.probs_adv = x_adv.half(), scores.softmax(1)
    return out


def _outputs(model, x, layer, batch_size) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(layer outputs [N, d], predictions [N], scores [N, K])`` on the CPU."""
    outputs = multi_layer_outputs(model, x, [layer], batch_size)
    return outputs[layer], outputs["__predictions__"], outputs["__scores__"]


def layer_names(model: nn.Module) -> list[str]:
    """The names ``extract(layer=...)`` accepts: every named submodule, in definition order.

    Example:
        >>> layer_names(model)[:3]  # doctest: +SKIP
        ['normalize', 'body', 'body.0']
    """
    return [name for name, _ in model.named_modules() if name]


@torch.no_grad()
def layer_outputs(
    model: nn.Module, x: torch.Tensor, layer: str | None = None, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened outputs of one layer and the predictions, ``([N, d], [N])`` on the CPU (eval mode)."""
    outputs = multi_layer_outputs(model, x, [layer], batch_size)
    return outputs[layer], outputs["__predictions__"]


@torch.no_grad()
def multi_layer_outputs(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str | None], batch_size: int = 500
) -> dict:
    """Outputs of several layers in one pass: ``{layer: [N, d_layer]}`` plus ``"__predictions__"``
    (``[N]``) and ``"__scores__"`` (``[N, K]``).

    ``None`` stands for ``model.features``. Every tensor is float32 on the CPU.
    """
    names = [name for name in layers if name is not None]
    _check_layers(model, names)
    device = _device(model)
    collected: dict = {name: [] for name in layers}
    predictions, all_scores = [], []
    with eval_mode(model), _hooks(model, names) as captured:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i: i + batch_size].to(device)
            if None in collected:
                z = model.features(xb)
                scores = model.head(z)
                collected[None].append(z.flatten(1).float().cpu())
            else:
                scores = model(xb)
            for name in names:
                collected[name].append(captured[name].flatten(1).float().cpu())
            predictions.append(labels_from_scores(scores).cpu())
            all_scores.append(scores.float().cpu())
    out = {name: torch.cat(parts) for name, parts in collected.items()}
    out["__predictions__"] = torch.cat(predictions)
    out["__scores__"] = torch.cat(all_scores)
    return out


@contextmanager
def _hooks(model: nn.Module, names: Sequence[str]):
    """Forward hooks that store the latest output of each named module in a dict."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, inputs, output):
            captured[name] = output.detach()
        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _check_layers(model: nn.Module, names: Sequence[str]) -> None:
    known = layer_names(model)
    for name in names:
        if name not in known:
            raise nearest_names_error("layer", name, known, "see layer_names(model)")


def _inputs(model: nn.Module, data, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, DataBundle):
        data = data.test
    if isinstance(data, Split):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(f"data must be a DataBundle, a Split or an (x, y) pair, got {type(data).__name__}")
    check_inputs(model, x, y, allow_empty=False, what="extract")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (or None for all), got {n}")
    if n is not None and n < x.shape[0]:
        index = stratified_indices(y, n, seed)
        x, y = x[index], y[index]
    return x, y


def _resolve_attack(attack, eps, data, seed) -> tuple[AttackFn | None, str | None, float | None]:
    if attack is None:
        return None, None, None
    if isinstance(attack, str):
        from ..attacks import make_attack

        eps = eps if eps is not None else getattr(data, "eps", None)
        if eps is None:
            raise ValueError(f"attack {attack!r} needs eps= (or pass a DataBundle, whose eps is used)")
        return make_attack(attack, eps, seed), attack, float(eps)
    if not callable(attack):
        raise TypeError(f"attack must be a spec string or a function (model, x, y) -> x_adv, got {type(attack)}")
    return attack, getattr(attack, "name", getattr(attack, "__name__", "custom")), eps


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
