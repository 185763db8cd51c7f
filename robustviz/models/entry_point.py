"""Load a user's model from a Python entry point, ``package.module:function``.

The command line cannot pickle or guess a user's architecture, so ``robustviz evaluate
--model mypkg.nets:load_mine`` imports ``mypkg.nets`` (from the current folder or anywhere on
``sys.path``), calls ``load_mine()`` with no arguments and uses the model it returns. The
function builds the network, loads its weights and returns it wrapped with
``robustviz.models.wrap`` (or any model with ``features`` and ``head``).

Example:
    A file ``mine.py`` in the current folder::

        from torchvision.models import resnet18
        from robustviz.models import wrap

        def cifar_resnet():
            net = resnet18(weights=None, num_classes=10)
            net.load_state_dict(torch.load("resnet18.pt", weights_only=True))
            return wrap(net, features="avgpool", mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))

    and then ``robustviz evaluate --model mine:cifar_resnet --dataset cifar10``.
"""

from __future__ import annotations

import importlib
import os
import sys

from torch import nn

from .._checks import nearest_names_error


def load_entry_point(spec: str) -> nn.Module:
    """Import ``module:function`` and return the model that ``function()`` returns.

    Args:
        spec: ``"package.module:function"``; the current folder is searched first.

    Returns:
        the model, with ``features`` and ``head`` (robustviz's contract).

    Raises:
        ValueError: a spec without ``:``, a function that is missing, or one that does not
            return a model with robustviz's contract (the message says how to fix it).
            A module that cannot be found is a ``ValueError`` too.
    """
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"--model {spec!r} is not an entry point: write package.module:function, e.g. "
                         "--model mine:cifar_resnet for the function cifar_resnet in ./mine.py")
    module = _import(module_name)
    if not hasattr(module, function_name):
        public = [name for name in dir(module) if not name.startswith("_") and callable(getattr(module, name))]
        raise nearest_names_error(f"function in {module_name}", function_name, public)
    model = getattr(module, function_name)()
    return check_contract(model, spec)


def check_contract(model, source: str) -> nn.Module:
    """``model`` if it is an ``nn.Module`` with ``features`` and ``head``; else a ``ValueError``."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"{source} returned a {type(model).__name__}, not a torch.nn.Module; return the model")
    missing = [name for name in ("features", "head") if not callable(getattr(model, name, None))]
    if missing:
        raise ValueError(f"{source} returned a {type(model).__name__} without {' and '.join(missing)}; return "
                         "robustviz.models.wrap(net, features='<layer name>', mean=..., std=...) instead")
    return model


def _import(module_name: str):
    """Import ``module_name`` with the current folder searched first (as ``python -m`` does)."""
    folder = os.getcwd()
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name.split(".")[0] and err.name != module_name:
            raise  # the user's module imports something missing: let its own message show
        raise ValueError(f"no module {module_name!r} here ({folder}) or on sys.path; run the command in "
                                  "the folder that holds it, or install its package") from err
    finally:
        if added:
            sys.path.remove(folder)
