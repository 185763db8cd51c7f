"""Bring your own model: give any ``nn.Module`` robustviz's contract.

``wrap(module, features="avgpool")`` splits a classifier at one named layer: ``features(x)``
runs the network up to that layer and flattens its output to ``[B, d]``; ``head(z)`` runs the
rest of the network from there to the class scores; ``forward(x) = head(features(x))``. The
split is read from the module's computation graph (``torch.fx`` symbolic tracing), so the
module can be a torchvision model, a user's ``nn.Sequential`` or any module whose forward
has no data-dependent Python control flow.

Normalisation becomes a layer inside the wrapped model (``mean``/``std``), so every input is
an image in [0, 1], as robustviz's attacks and evaluations require; an input outside [0, 1]
raises an error that says how to fix it.

Example:
    >>> from torchvision.models import resnet18
    >>> net = resnet18(weights=None, num_classes=10)
    >>> model = wrap(net, features="avgpool", mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    >>> model.features(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 512])
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import fx, nn

from .._checks import check_images, nearest_names_error
from .base import Normalize


class WrappedModel(nn.Module):
    """A user's module split into ``features`` and ``head`` at a named layer; built by ``wrap``.

    Attributes:
        normalize: the normalisation layer (``nn.Identity`` without ``mean``/``std``).
        net: the user's module, unchanged (its layers keep their names under ``net.``).
        feature_layer: the name of the layer whose output is the features.
        num_classes: the number of classes ``K`` (``None`` if unknown).
        feat_dim: the size ``d`` of ``features(x)`` (known after the first call).
        check_range: whether every call checks that inputs lie in [0, 1] (default True).

    Shapes:
        ``features(x)``: ``[B, C, H, W]`` in [0, 1] -> ``[B, d]``.
        ``head(z)``: ``[B, d]`` -> ``[B, K]`` scores.
        ``forward(x)``: ``[B, C, H, W]`` in [0, 1] -> ``[B, K]`` scores.
    """

    def __init__(self, net: nn.Module, feature_layer: str, normalize: nn.Module, num_classes: int | None,
                 features_part: fx.GraphModule, head_part: fx.GraphModule) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net  # registered first, so its layers are named net.<name> in named_modules()
        self.features_part = features_part
        self.head_part = head_part
        self.feature_layer = feature_layer
        self.num_classes = num_classes
        self.feature_shape: tuple[int, ...] | None = None  # the layer's output per sample, before flattening
        self.check_range = True
        self.arch = f"wrapped {type(net).__name__}"
        self.build_args = None

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (where inputs must go)."""
        return next(self.parameters()).device

    @property
    def feat_dim(self) -> int | None:
        """The size of ``features(x)``, or ``None`` before the first call."""
        if self.feature_shape is None:
            return None
        return int(torch.Size(self.feature_shape).numel())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The output of ``feature_layer`` for images ``x`` in [0, 1], flattened to ``[B, d]``."""
        self._check(x)
        z = self.features_part(self.normalize(x))
        self.feature_shape = tuple(z.shape[1:])
        return z.flatten(1)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """The rest of the network: features ``[B, d]`` -> class scores ``[B, K]``."""
        if self.feature_shape is not None and z.dim() == 2:
            z = z.view(z.shape[0], *self.feature_shape)
        return self.head_part(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, K]`` (higher = more likely): ``head(features(x))``.

        Computed by the user's module itself on the normalised input (the same numbers), so
        attacks attack exactly the user's network and forward hooks on any of its layers fire.
        """
        self._check(x)
        return self.net(self.normalize(x))

    def _check(self, x: torch.Tensor) -> None:
        if self.check_range:
            check_images(x.detach())


def wrap(
    module: nn.Module,
    features: str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> WrappedModel:
    """Give ``module`` robustviz's model contract, split at the layer named ``features``.

    Args:
        module: a classifier mapping images to class scores ``[B, K]`` (a torchvision
            ResNet, an ``nn.Sequential``, a checkpoint you loaded). It is used as it is, not
            copied: training the wrapped model trains ``module``.
        features: the name of the layer whose output is the feature vector, as in
            ``module.named_modules()`` (``"avgpool"`` for a torchvision ResNet, ``"4"`` for
            the fifth layer of an ``nn.Sequential``). Everything after it must depend on
            that layer's output alone (no skip connection across it).
        mean, std: per-channel normalisation in [0, 1] pixel units (e.g. ImageNet's
            ``(0.485, 0.456, 0.406)`` / ``(0.229, 0.224, 0.225)``), applied inside the model;
            ``None`` when ``module`` takes [0, 1] images as they are.
        num_classes: the number of classes; default: the output size of the module's last
            ``nn.Linear`` (``None`` if it has none).

    Returns:
        a ``WrappedModel`` on the module's device, in the module's train/eval mode.

    Raises:
        ValueError: ``features`` is not a layer of ``module`` (the error lists the nearest
            names), a skip connection crosses the layer, or ``mean``/``std`` do not match.
        TypeError: ``module`` is not an ``nn.Module``, or its forward cannot be traced.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10))
        >>> model = wrap(net, features="2")
        >>> model.features(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4, 5408])
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"wrap needs a torch.nn.Module, got {type(module).__name__}")
    names = [name for name, _ in module.named_modules() if name]
    if features not in names:
        raise nearest_names_error("layer", features, names, "list them with [n for n, _ in module.named_modules()]")
    graph = _trace(module, features)
    features_part = _graph_module(module, _graph_up_to(graph, features))
    head_part = _graph_module(module, _graph_after(graph, features))
    model = WrappedModel(module, features, _normalisation(module, mean, std), _classes(module, num_classes),
                         features_part, head_part)
    param = next(module.parameters(), None)
    if param is not None:
        model.normalize.to(param.device)
    return model.train(module.training)


class _CutTracer(fx.Tracer):
    """torch.fx's tracer, keeping the feature layer and every module beside it as one call."""

    def __init__(self, layer: str) -> None:
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        """Every module is called as a whole (so its forward hooks fire), except the blocks that
        contain the feature layer, which are traced into to reach it."""
        return not self.layer.startswith(qualified_name + ".")


def _trace(module: nn.Module, layer: str) -> fx.Graph:
    try:
        graph = _CutTracer(layer).trace(module)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...) for untraceable code
        raise TypeError(
            f"wrap could not trace {type(module).__name__}.forward with torch.fx ({type(err).__name__}: {err}). "
            "Data-dependent Python control flow (an `if` on a tensor value) cannot be traced: move it out "
            "of forward, or split the model yourself into robustviz.models.RobustModel(body, feat_dim, "
            "num_classes, mean, std, head=...)") from err
    calls = [node for node in graph.nodes if node.op == "call_module" and node.target == layer]
    if len(calls) != 1:
        raise ValueError(f"layer {layer!r} is called {len(calls)} times in forward; the features must be the "
                         "output of a layer called once: choose another layer")
    return graph


def _graph_up_to(graph: fx.Graph, layer: str) -> fx.Graph:
    """The nodes up to the layer's call, with its output as the graph's output."""
    part, env = fx.Graph(), {}
    for node in graph.nodes:
        if node.op == "output":
            break
        env[node] = part.node_copy(node, lambda arg: env[arg])
        if node.op == "call_module" and node.target == layer:
            part.output(env[node])
            break
    return part


def _graph_after(graph: fx.Graph, layer: str) -> fx.Graph:
    """The nodes after the layer's call, reading its output from a new input ``z``."""
    nodes = list(graph.nodes)
    cut = next(i for i, node in enumerate(nodes) if node.op == "call_module" and node.target == layer)
    part = fx.Graph()
    env = {nodes[cut]: part.placeholder("z")}

    def lookup(arg: fx.Node) -> fx.Node:
        if arg in env:
            return env[arg]
        if arg.op == "get_attr":  # a parameter or constant used after the cut: copy its read
            env[arg] = part.node_copy(arg)
            return env[arg]
        raise ValueError(
            f"the rest of the network after {layer!r} also uses {arg.name!r}, computed before it (a skip "
            "connection crosses the layer), so the scores are not a function of that layer's output alone; "
            "choose a layer after the skip connection closes (for a ResNet: a whole block such as 'layer4', "
            "or 'avgpool')")

    for node in nodes[cut + 1:]:
        env[node] = part.node_copy(node, lookup)
    return part


def _graph_module(module: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """A module running ``graph`` with ``module``'s layers (shared, not copied), unused nodes removed."""
    part = fx.GraphModule(module, graph)
    part.graph.eliminate_dead_code()
    part.recompile()
    return fx.GraphModule(module, part.graph)  # again: keep only the layers still used


def _normalisation(module: nn.Module, mean, std) -> nn.Module:
    if mean is None and std is None:
        return nn.Identity()
    if mean is None or std is None:
        raise ValueError("pass both mean= and std= (one value per channel), or neither")
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if any(abs(v) > 1.5 for v in mean):
        raise ValueError(f"mean={mean} looks like 0-255 pixel units; robustviz's inputs are in [0, 1]: "
                         "divide mean and std by 255")
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and len(mean) != conv.in_channels:
        raise ValueError(f"mean has {len(mean)} entries but the model's first convolution takes "
                         f"{conv.in_channels} channel(s): give one value per channel")
    return Normalize(mean, std)


def _classes(module: nn.Module, num_classes: int | None) -> int | None:
    if num_classes is not None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        return int(num_classes)
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None
