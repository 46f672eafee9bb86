"""Network surgery: freezing, train/eval modes, swapping units, scale-and-shift.

The training context (:mod:`flexsk._training`) freezes, sets modes and swaps
weights only through the functions here; strategies do none of it: they
name what to train, and the context does the surgery.
"""

import contextlib
import copy
import hashlib

import torch
from torch import fx, nn
from torch.nn.utils import parametrize

from . import _forward
from ._forward import first_output
from ._locks import forward_pass, tracing

__all__ = [
    "Selection", "select", "donor_tensors", "swap_unit", "unit_from", "add_scale_shift",
    "fold_scale_shift", "capture_input", "Cuts", "fingerprint",
]


class Selection:
    """What one training run changes: some units (or all) and extra parameters.

    Parameters
    ----------
    units : tuple of Unit or None
        The units to tune. None means every parameter of the net (ft-all),
        including parameters that belong to no unit.
    extra : callable, optional
        ``extra(name) -> bool`` marks further trainable parameters by name
        (the scale-and-shift parameters of ft-ss).
    """

    def __init__(self, units=None, extra=None):
        self.units = units
        self.extra = extra

    def trains(self, name):
        if self.units is None:
            return True
        if self.extra is not None and self.extra(name):
            return True
        return any(unit.owns(name) for unit in self.units)

    def prepare(self, module):
        """Freeze everything outside the selection; return its parameters."""
        params = []
        for name, param in module.named_parameters():
            param.requires_grad_(self.trains(name))
            if param.requires_grad:
                params.append(param)
        return params

    def train_mode(self, module):
        """Tuned units in train mode; everything frozen in eval mode.

        Frozen units must stay in eval mode so that BatchNorm running
        statistics and dropout do not move (``requires_grad`` alone does not
        stop them).
        """
        if self.units is None:
            module.train()
            return
        module.eval()
        submodules = dict(module.named_modules())
        for unit in self.units:
            for name in unit.modules:
                submodules[name].train()

    def state(self, module):
        """A copy of everything training can change: tuned parameters and buffers."""
        state = {name: p.detach().clone() for name, p in module.named_parameters()
                 if self.trains(name)}
        for name, buf in module.named_buffers():
            if self.units is None or any(unit.owns(name) for unit in self.units):
                state[name] = buf.detach().clone()
        return state


def select(units=None, extra=None):
    """Build a :class:`Selection` (``units=None`` selects every parameter)."""
    return Selection(None if units is None else tuple(units), extra)


def load_state(module, state):
    """Copy ``state`` (from :meth:`Selection.state`) into ``module`` in place."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            tensors[name].copy_(value)


def _unit_tensors(module, unit):
    """The parameters and buffers of ``unit`` in ``module``, by name."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    return {name: tensor for name, tensor in tensors.items() if unit.owns(name)}


def donor_tensors(module, donor, unit):
    """The unit's tensors in ``donor``, checked against those of ``module``."""
    theirs = _unit_tensors(donor, unit)
    missing = sorted(_unit_tensors(module, unit).keys() - theirs.keys())
    if missing:
        raise ValueError(f"Donor network lacks {missing} of unit {unit.name!r}.")
    return theirs


def swap_unit(base, donor, unit):
    """A copy of ``base`` whose ``unit`` (parameters and buffers) comes from ``donor``.

    This is the proxy network of Algorithm 2, line 4.
    """
    proxy = copy.deepcopy(base)
    load_state(proxy, donor_tensors(proxy, donor, unit))
    return proxy


@contextlib.contextmanager
def unit_from(module, donor, unit):
    """Temporarily give ``module`` the ``unit`` of ``donor`` (parameters and buffers).

    Scoring many proxies in one workspace this way avoids a copy of the whole
    network per proxy.
    """
    theirs = donor_tensors(module, donor, unit)
    saved = {name: tensor.detach().clone() for name, tensor in _unit_tensors(module, unit).items()}
    load_state(module, theirs)
    try:
        yield module
    finally:
        load_state(module, saved)


# -- ft-ss: scale and shift (Meta-Transfer Learning) ---------------------------------


class _Scale(nn.Module):
    """``weight * scale``: one scale per (out, in) kernel, or per output feature."""

    def __init__(self, weight, per_input):
        super().__init__()
        shape = weight.shape[:2] if per_input else weight.shape[:1]
        shape = shape + (1,) * (weight.dim() - len(shape))
        self.scale = nn.Parameter(torch.ones(shape, dtype=weight.dtype, device=weight.device))

    def forward(self, weight):
        return weight * self.scale


class _Shift(nn.Module):
    """``bias + shift``, the shift starting at zero."""

    def __init__(self, bias):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros_like(bias))

    def forward(self, bias):
        return bias + self.shift


def _is_scale_shift_parameter(name):
    return ".parametrizations." in name and name.endswith((".scale", ".shift"))


def add_scale_shift(module, tuned):
    """Add scale and shift parametrizations to layers outside the units ``tuned``.

    ``tuned`` is the last unit (and a new head, when there is one).
    Convolutions get a scale per (out, in) channel pair, broadcast over the
    kernel; linear layers one per output feature. Every existing bias gets a
    shift. BatchNorm layers are left alone (their affine parameters stay
    frozen). Returns the :class:`Selection` that trains ``tuned`` and the new
    parameters.
    """
    tuned = tuple(tuned)
    for name, layer in module.named_modules():
        if not name or any(unit.owns(name + ".weight") for unit in tuned):
            continue
        if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
            per_input = isinstance(layer, nn.modules.conv._ConvNd)
            parametrize.register_parametrization(layer, "weight",
                                                 _Scale(layer.weight, per_input))
            if layer.bias is not None:
                parametrize.register_parametrization(layer, "bias", _Shift(layer.bias))
    return Selection(tuned, extra=_is_scale_shift_parameter)


def fold_scale_shift(module):
    """Fold scales and shifts into plain weights: the original architecture again."""
    for layer in list(module.modules()):
        if parametrize.is_parametrized(layer):
            for tensor_name in list(layer.parametrizations.keys()):
                parametrize.remove_parametrizations(layer, tensor_name,
                                                    leave_parametrized=True)
    return module


# -- embeddings -----------------------------------------------------------------------


def capture_input(module, submodule_name, X):
    """The input of ``submodule_name`` when ``module`` runs on ``X``.

    The forward pass stops there, so the rest of the network is not run. Safe
    on a module that other threads run at the same time.
    """
    return _forward.inputs(module, X, [submodule_name])[submodule_name]


# -- prefix / suffix cuts (activation caching) ------------------------------------------------


class _UnitTracer(fx.Tracer):
    """Traces a network keeping unit modules whole (as ``call_module`` nodes)."""

    def __init__(self, leaves):
        super().__init__()
        self.leaves = set(leaves)

    def is_leaf_module(self, module, qualname):
        return qualname in self.leaves or super().is_leaf_module(module, qualname)


class Cuts:
    """Where a network can be cut into a frozen prefix and a trainable suffix.

    The network is traced with :mod:`torch.fx`, keeping units whole. It can be
    cut before unit ``l`` when exactly one value, the input of the unit's first
    module, crosses from the nodes before that call to the nodes after it.
    Every cut is checked on a probe batch: ``suffix(prefix(x))`` must equal
    ``module(x)``. Units that cannot be cut (or networks that cannot be
    traced) are simply absent, and callers fall back to full forward passes.

    Parameters
    ----------
    module : torch.nn.Module
        The pretrained network, in eval mode.
    units : list of Unit
    probe : torch.Tensor
        A small input batch.
    """

    def __init__(self, module, units, probe):
        self._graphs = {}
        self._prefix_parameters = {}
        leaves = [name for unit in units for name in unit.modules]
        try:
            with tracing():  # patches nn.Module.__call__ process-wide while it runs
                graph = _UnitTracer(leaves).trace(module)
        except Exception:  # untraceable (control flow on data, ...): no cuts
            return
        with torch.no_grad(), forward_pass():
            expected = module(probe)
        for unit in units:
            split = _split_before(graph, unit.modules[0])
            if split is not None and self._check(module, split, probe, expected):
                self._graphs[unit.name] = split
                self._prefix_parameters[unit.name] = _parameters_used(module, split[0])

    def __contains__(self, unit_name):
        return unit_name in self._graphs

    def prefix_parameters(self, unit_name):
        """Names of the parameters the prefix before ``unit_name`` uses.

        A selection that trains any of them cannot use the cached prefix.
        """
        return self._prefix_parameters[unit_name]

    def prefix(self, module, unit_name):
        """The frozen part before the unit, over ``module``'s own submodules."""
        return fx.GraphModule(module, self._graphs[unit_name][0])

    def suffix(self, module, unit_name):
        """The unit and everything after it, sharing ``module``'s submodules."""
        return fx.GraphModule(module, self._graphs[unit_name][1])

    @staticmethod
    def _check(module, split, probe, expected):
        try:
            with torch.no_grad(), forward_pass():
                inputs = fx.GraphModule(module, split[0])(probe)
                found = fx.GraphModule(module, split[1])(inputs)
            return torch.allclose(first_output(found), first_output(expected), rtol=1e-5,
                                  atol=1e-6)
        except Exception:
            return False


def _parameters_used(module, graph):
    """Parameter names a graph reads: those of the modules it calls, and its attributes."""
    names = set()
    for node in graph.nodes:
        if node.op == "call_module":
            names.update(f"{node.target}.{n}" for n, _ in
                         module.get_submodule(node.target).named_parameters())
        elif node.op == "get_attr":
            names.add(node.target)
    return frozenset(names)


def _split_before(graph, module_name):
    """Prefix and suffix graphs around the (single) call of ``module_name``."""
    nodes = list(graph.nodes)
    calls = [n for n in nodes if n.op == "call_module" and n.target == module_name]
    if len(calls) != 1:
        return None
    position = nodes.index(calls[0])
    before, after = nodes[:position], set(nodes[position:])
    if all(n.op == "placeholder" for n in before):
        return None  # nothing to cache before the first unit
    crossing = [n for n in before if any(user in after for user in n.users)]
    if len(crossing) != 1 or calls[0].args != (crossing[0],) or calls[0].kwargs:
        return None
    prefix, env = fx.Graph(), {}
    for node in before:
        env[node] = prefix.node_copy(node, env.__getitem__)
    prefix.output(env[crossing[0]])
    suffix = fx.Graph()
    env = {crossing[0]: suffix.placeholder("unit_input")}
    for node in nodes[position:]:
        env[node] = suffix.node_copy(node, env.__getitem__)
    return prefix, suffix


def unit_inputs(module, units, X):
    """The inputs of several units' first modules in one eval-mode pass over ``X``, by
    unit name."""
    captured = _forward.inputs(module, X, [unit.modules[0] for unit in units])
    return {unit.name: captured[unit.modules[0]] for unit in units}


def fingerprint(module, skip=None):
    """A hash of every parameter and buffer of ``module`` (names, shapes, values), but
    those that the Unit ``skip`` owns."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        if skip is not None and skip.owns(key):
            continue
        value = value.detach().cpu().contiguous()
        digest.update(f"{key}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
