"""Splitting a network into units, in the order its forward pass runs them.

A *unit* is a named group of submodules that is tuned as a whole: a layer, a
block, or any set of modules (paper, Section 3.2: ``N = N_L o ... o N_1``).
"""

import warnings
from dataclasses import dataclass

import torch

__all__ = ["Unit", "RESERVED_NAMES", "resolve_units", "forward_order"]

#: Keys of the results that are not units: ft-all and scale-and-shift.
RESERVED_NAMES = ("all", "ss")


@dataclass(frozen=True)
class Unit:
    """A tunable unit: a name and the dotted names of the modules it holds."""

    name: str
    modules: tuple

    def owns(self, key):
        """Whether the state-dict or parameter name ``key`` lies in this unit."""
        return any(key.startswith(module + ".") for module in self.modules)


def _owns_parameters(module):
    return any(True for _ in module.parameters())


def forward_order(module, probe, names):
    """Order ``names`` (dotted module names) by their first call on ``probe``.

    Modules never called on the probe batch are returned separately.
    """
    calls = []
    handles = []
    submodules = dict(module.named_modules())
    for name in names:
        def hook(mod, args, name=name):
            calls.append(name)
        handles.append(submodules[name].register_forward_pre_hook(hook))
    modes = {sub: sub.training for sub in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            module(probe)
    finally:
        for sub, mode in modes.items():
            sub.training = mode
        for handle in handles:
            handle.remove()
    first_call = {}
    for position, name in enumerate(calls):
        first_call.setdefault(name, position)
    called = sorted((n for n in names if n in first_call), key=first_call.__getitem__)
    never_called = [n for n in names if n not in first_call]
    return called, never_called


def _valid_names(module):
    return [name for name, sub in module.named_modules() if name and _owns_parameters(sub)]


def _check_names(module, groups):
    """Check unknown, empty, duplicate and overlapping module names."""
    valid = _valid_names(module)
    valid_set = set(valid)
    seen = {}
    for group, names in groups.items():
        if group in RESERVED_NAMES:
            raise ValueError(f"Unit names {RESERVED_NAMES} are reserved; rename unit {group!r}. "
                             f"Valid module names: {valid}.")
        if not names:
            raise ValueError(f"Unit {group!r} holds no modules. Valid module names: {valid}.")
        for name in names:
            if not isinstance(name, str) or name not in valid_set:
                raise ValueError(
                    f"Unknown module {name!r} in units. Valid names are the submodules "
                    f"that own parameters: {valid}.")
            for other, other_group in seen.items():
                if (name == other or name.startswith(other + ".")
                        or other.startswith(name + ".")):
                    raise ValueError(
                        f"Units overlap: module {name!r} (unit {group!r}) and module "
                        f"{other!r} (unit {other_group!r}) share parameters. Valid names: "
                        f"{valid}.")
            seen[name] = group


def resolve_units(module, units, probe):
    """Turn the ``units`` parameter into a list of :class:`Unit` in forward order.

    Parameters
    ----------
    module : torch.nn.Module
        The network, with materialized parameters.
    units : "auto", list of str or dict of str to list of str
        ``"auto"``: the top-level children that own parameters. A list: one
        unit per (dotted) module name. A dict: named groups of module names.
    probe : torch.Tensor
        A small input batch; the forward pass on it gives the order.

    Returns
    -------
    list of Unit
    """
    if isinstance(units, str):  # "auto", checked by the parameter constraints
        names = [name for name, child in module.named_children() if _owns_parameters(child)]
        for name in names:
            if name in RESERVED_NAMES:
                raise ValueError(
                    f"The network has a child module named {name!r}, a reserved unit name; "
                    f"pass units explicitly.")
        groups = {name: [name] for name in names}
    elif isinstance(units, dict):
        groups = {}
        for group, names in units.items():
            if not isinstance(group, str):
                raise ValueError(f"Unit group names must be strings, got {group!r}.")
            groups[group] = [names] if isinstance(names, str) else list(names)
    else:
        groups = {}
        for name in units:
            if not isinstance(name, str):
                raise ValueError(f"units must hold module names (str), got {name!r}.")
            if name in groups:
                raise ValueError(f"Unit {name!r} is listed twice.")
            groups[name] = [name]
    _check_names(module, groups)
    if not groups:
        if any(True for _ in module.parameters()):
            raise ValueError(
                f"The network ({type(module).__name__}) has no submodule that owns parameters: "
                f"its parameters belong to the root module itself, so it has no units to "
                f"choose from. Wrap its layers in submodules, e.g. nn.Sequential(layer).")
        raise ValueError("The network has no parameters: nothing to tune.")

    member_names = [name for names in groups.values() for name in names]
    called, never_called = forward_order(module, probe, member_names)
    if never_called and isinstance(units, str):
        warnings.warn(f"Children {never_called} own parameters but are not called in the "
                      f"forward pass; they belong to no unit.", UserWarning)
        groups = {g: names for g, names in groups.items() if names[0] not in never_called}
    elif never_called:
        called_names = [name for name in _valid_names(module) if name not in never_called
                        and not any(name.startswith(n + ".") for n in never_called)]
        raise ValueError(
            f"Modules {never_called} are not called in the forward pass, so tuning them "
            f"cannot change the output. Leave them out of units. Valid module names: "
            f"{called_names}.")
    rank = {name: position for position, name in enumerate(called)}
    ordered = sorted(groups.items(), key=lambda item: min(rank[n] for n in item[1]))
    return [Unit(group, tuple(sorted(names, key=rank.__getitem__))) for group, names in ordered]
