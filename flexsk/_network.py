"""The user's network: a private copy of its pretrained module, and what it tells about itself.

Copies and nets built here never share state with the base net the user
passed, so that nothing FlexTuner does can modify it.
"""

import copy

import torch
from skorch import NeuralNetClassifier
from torch import nn

from . import _forward
from ._training import SkorchClassifierLoss

__all__ = ["device_of", "pretrained_module", "net_like", "loss_of", "outputs_probabilities",
           "expected_input"]


def device_of(net):
    if getattr(net, "device", None) is not None:
        return torch.device(net.device)
    return torch.device("cpu")


def pretrained_module(base_net):
    """A private copy of the pretrained module held by ``base_net``."""
    if getattr(base_net, "initialized_", False):
        module = base_net.module_
    elif isinstance(base_net.module, nn.Module):
        module = base_net.module
    else:
        raise ValueError(
            f"base_net holds no pretrained weights: its module is "
            f"{getattr(base_net.module, '__name__', base_net.module)!r} (a class) and the net "
            f"is not initialized. Pass a fitted or initialized NeuralNetClassifier "
            f"(net.initialize()), or one built around an nn.Module instance.")
    return copy.deepcopy(module)


def net_like(base_net, module, **overrides):
    """A new initialized net like ``base_net`` that holds ``module``, with parameters
    ``overrides`` (the ``classes`` of a new head) in place of ``base_net``'s.

    Its callbacks are disabled: fine-tuning does not run them, and initializing
    some (``Checkpoint`` creates its directory) has side effects.
    """
    skipped = ("module__", "callbacks__", "_")
    params = {k: v for k, v in base_net.get_params(deep=False).items()
              if k not in ("module", "callbacks") and not k.startswith(skipped)}
    params = {**copy.deepcopy(params), **overrides}
    net = type(base_net)(module=module, callbacks="disable", **params)
    return net.initialize()


def loss_of(net):
    """The training loss of ``net``: its ``get_loss``, picklable when it is skorch's own."""
    if type(net).get_loss is NeuralNetClassifier.get_loss:
        return SkorchClassifierLoss(net.criterion_)
    return lambda outputs, y: net.get_loss(outputs, y, training=True)


def outputs_probabilities(net):
    # skorch's convention: NLLLoss means the module outputs probabilities.
    criterion = getattr(net, "criterion_", None) or net.criterion
    return isinstance(criterion, nn.NLLLoss) or (
        isinstance(criterion, type) and issubclass(criterion, nn.NLLLoss))


def expected_input(module, probe):
    """What input ``module`` takes, as far as its first layers tell."""
    for name, layer in module.named_modules():
        if isinstance(layer, nn.modules.conv._ConvNd) and not isinstance(
                layer, nn.modules.lazy.LazyModuleMixin):
            dims = {3: "L", 4: "H, W", 5: "D, H, W"}[layer.weight.dim()]
            if probe.dim() != layer.weight.dim() or probe.shape[1] != layer.in_channels:
                return (f"its first convolution {name!r} expects {layer.in_channels} input "
                        f"channels, i.e. inputs of shape (n_samples, {layer.in_channels}, "
                        f"{dims}).")
            size = " x ".join(map(str, probe.shape[2:]))
            fits = _fitting_size(module, probe)
            if fits is not None:
                return (f"the channel count matches its first convolution {name!r}, but not "
                        f"the size {size}: it takes inputs of shape (n_samples, "
                        f"{', '.join(map(str, fits))}).")
            return (f"the channel count matches its first convolution {name!r}, so the size "
                    f"{size} is what it cannot take: a later layer fixes the input size the "
                    f"network was built for.")
        if isinstance(layer, nn.Linear) and not isinstance(
                layer, nn.modules.lazy.LazyModuleMixin):
            return (f"its first linear layer {name!r} expects {layer.in_features} features, "
                    f"i.e. inputs of shape (n_samples, {layer.in_features}) after any "
                    f"earlier layers.")
    return ""


def _fitting_size(module, probe):
    """An input shape (C, S, S) that ``module`` takes, for square images whose size it rejects.

    The first linear layer after the convolutions fixes the size. The number of
    features it receives grows with the side length, so a bisection over sides finds
    the smallest that feeds it as many features as it expects; a forward pass then
    checks that side. None when no side up to 4 times the given one works.
    """
    linear_name, linear = next(((name, layer) for name, layer in module.named_modules()
                                if isinstance(layer, nn.Linear)
                                and not isinstance(layer, nn.modules.lazy.LazyModuleMixin)),
                               (None, None))
    if linear is None or probe.dim() != 4 or probe.shape[2] != probe.shape[3]:
        return None

    def features(side):
        try:
            captured = _forward.inputs(module, probe.new_zeros((1, probe.shape[1], side, side)),
                                       [linear_name])
        except (RuntimeError, ValueError, TypeError):
            return 0  # too small to reach the linear layer
        return captured[linear_name].shape[-1]

    low, high = 1, 4 * probe.shape[2]
    if features(high) < linear.in_features:
        return None
    while low < high:
        middle = (low + high) // 2
        if features(middle) < linear.in_features:
            low = middle + 1
        else:
            high = middle
    if features(low) != linear.in_features:
        return None
    shape = (probe.shape[1], low, low)
    try:
        _forward.run(module, probe.new_zeros((1,) + shape))
    except (RuntimeError, ValueError, TypeError):
        return None
    return shape
