"""Lean pickles of a fitted FlexTuner: each distinct set of weights is stored once.

A fitted tuner holds the base net, the pretrained copy it tuned from, the
returned model (``net_``) and the selection run's pick (``candidates_``).
Outside the tuned unit(s) they all hold the pretrained weights. When pickled,
a module is stored as a weightless skeleton and only the tensors that differ
from the base net's; unpickling copies the others back from the base net, so
that every module is again independent of the others.
"""

import copy

import torch
from torch import nn

__all__ = ["SlimModule", "reference_tensors"]


def _tensors(module):
    """Name -> tensor of every parameter and buffer, tied ones under each name."""
    named = list(module.named_parameters(remove_duplicate=False))
    named += list(module.named_buffers(remove_duplicate=False))
    return {name: tensor for name, tensor in named if tensor is not None}


def reference_tensors(module):
    """The tensors another module may share: the base net's materialized ones."""
    if not isinstance(module, nn.Module):
        return {}
    lazy = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)
    return {name: tensor for name, tensor in _tensors(module).items()
            if not isinstance(tensor, lazy)}


def _same(tensor, reference):
    return (reference is not None and tensor.shape == reference.shape
            and tensor.dtype == reference.dtype and tensor.device == reference.device
            and torch.equal(tensor.detach(), reference.detach()))


class SlimModule:
    """A module as a weightless skeleton, the tensors that differ from a reference, and
    the names of those equal to it (:meth:`restore` copies them back)."""

    def __init__(self, module, reference):
        tensors = _tensors(module)
        memo = {}
        for tensor in tensors.values():
            if id(tensor) not in memo:
                empty = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
                memo[id(tensor)] = (nn.Parameter(empty, requires_grad=tensor.requires_grad)
                                    if isinstance(tensor, nn.Parameter) else empty)
        self.skeleton = copy.deepcopy(module, memo)
        self.shared = [name for name, t in tensors.items() if _same(t, reference.get(name))]
        self.delta = {name: t.detach() for name, t in tensors.items() if name not in self.shared}
        # the base net's copy of a shared tensor may lie in another memory format, whose
        # strides the kernels read (channels-last, say): restored with this one's
        self.strides = {name: tensors[name].stride() for name in self.shared}

    def restore(self, reference):
        """The module again, with its own copy of every tensor."""
        module = self.skeleton
        restored = {}  # placeholder id -> tensor, so that tied weights stay tied
        for name, tensor in {**{n: reference[n] for n in self.shared}, **self.delta}.items():
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            slots = owner._parameters if attr in owner._parameters else owner._buffers
            placeholder = slots[attr]
            if id(placeholder) not in restored:
                data = tensor if name not in self.shared else torch.empty_strided(
                    tensor.shape, self.strides[name], dtype=tensor.dtype,
                    device=tensor.device).copy_(tensor.detach())
                restored[id(placeholder)] = (
                    nn.Parameter(data, requires_grad=placeholder.requires_grad)
                    if isinstance(placeholder, nn.Parameter) else data)
            slots[attr] = restored[id(placeholder)]
        return module
