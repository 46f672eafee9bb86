"""Splitting a network into units, in the order its forward pass runs them.

A *unit* is a named group of submodules (and, optionally, of parameters held
directly by a module, such as a ViT's ``cls_token``) that is tuned as a
whole: a layer, a block, or any set of modules (paper, Section 3.2:
``N = N_L o ... o N_1``).
"""

import warnings
from dataclasses import dataclass

from sklearn.utils._param_validation import StrOptions
from torch import nn

from . import _forward

__all__ = ["Unit", "RESERVED_NAMES", "UNIT_RULES", "UNITS_CONSTRAINT", "resolve_units",
           "forward_order", "valid_names"]

#: Keys of the results that are not units: ft-all, scale-and-shift and the recipes.
RESERVED_NAMES = ("all", "ss", "auto-rgn", "lp-ft", "llrd")

#: Containers whose children are the blocks of ``units="blocks"``.
BLOCK_CONTAINERS = (nn.ModuleList, nn.Sequential)

#: Valid names listed in full up to this many; beyond, grouped by top-level module.
_MAX_LISTED = 12


@dataclass(frozen=True)
class Unit:
    """A tunable unit: a name, the dotted names of its modules, and of its own parameters.

    ``params`` are parameters held directly by a module (not by one of its
    submodules), e.g. ``("cls_token", "pos_embed")`` at the root of a ViT.
    """

    name: str
    modules: tuple
    params: tuple = ()

    def owns(self, key):
        """Whether the state-dict or parameter name ``key`` lies in this unit."""
        return key in self.params or any(key.startswith(module + ".") for module in self.modules)

    @property
    def members(self):
        return self.modules + self.params


def _owns_parameters(module):
    return any(True for _ in module.parameters())


def _direct_parameters(module, prefix=""):
    return [prefix + name for name, _ in module.named_parameters(recurse=False)]


def forward_order(module, probe, names):
    """Order ``names`` (dotted module names) by their first call on ``probe``.

    A module whose parameters its parent uses without calling it (the output
    projection of :class:`torch.nn.MultiheadAttention`) takes the place of its
    nearest called ancestor below the root. Modules that neither run nor sit in
    a module that runs are returned separately.
    """
    watched = set(names)
    for name in names:  # their ancestors, for modules used without being called
        parts = name.split(".")
        watched.update(".".join(parts[:i]) for i in range(1, len(parts)))
    first_call = {name: i for i, name in enumerate(_forward.calls(module, probe, watched))}

    def position(name):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in first_call:
                return first_call[candidate]
        return None

    positions = {name: position(name) for name in names}
    called = sorted((n for n in names if positions[n] is not None),
                    key=lambda n: (positions[n], n.count(".")))
    never_called = [n for n in names if positions[n] is None]
    return called, never_called


def valid_names(module):
    """Dotted names of the submodules that own parameters, then of the parameters held
    directly by a module that has submodules (a ViT's ``cls_token``), in registration order.

    A layer's own weights are named by the layer (``"fc"``, not ``"fc.weight"``).
    """
    names = [name for name, sub in module.named_modules() if name and _owns_parameters(sub)]
    for prefix, sub in module.named_modules():
        if any(True for _ in sub.children()):
            names += _direct_parameters(sub, prefix + "." if prefix else "")
    return names


def _describe_names(names):
    """The valid names for an error message: all of them, or grouped when there are many."""
    if len(names) <= _MAX_LISTED:
        return f"Valid module names: {names}."
    groups = {}
    for name in names:
        groups.setdefault(name.split(".")[0], []).append(name)
    parts = [top if len(members) == 1 else f"{top} (+{len(members) - 1} nested)"
             for top, members in groups.items()]
    return (f"Valid module names ({len(names)}, by top-level module): {', '.join(parts)}. "
            f"flexsk.preview_units shows how a network splits.")


def _check_names(module, groups):
    """Check unknown, empty, duplicate and overlapping member names."""
    valid = valid_names(module)
    valid_set = set(valid)
    parameters = {name for name, _ in module.named_parameters()}
    listed = _describe_names(valid)
    seen = {}
    for group, names in groups.items():
        if group in RESERVED_NAMES:
            raise ValueError(f"Unit names {RESERVED_NAMES} are reserved; rename unit {group!r}. "
                             f"{listed}")
        if not names:
            raise ValueError(f"Unit {group!r} holds no modules. {listed}")
        for name in names:
            if not isinstance(name, str) or name not in valid_set:
                raise ValueError(
                    f"Unknown module {name!r} in units. Members are the submodules that own "
                    f"parameters, or parameters held directly by a module. {listed}")
            for other, other_group in seen.items():
                if (name == other or name.startswith(other + ".")
                        or other.startswith(name + ".")):
                    raise ValueError(
                        f"Units overlap: {name!r} (unit {group!r}) and {other!r} (unit "
                        f"{other_group!r}) share parameters. {listed}")
            seen[name] = group
        if all(name in parameters and name not in dict(module.named_modules())
               for name in names):
            raise ValueError(
                f"Unit {group!r} holds only parameters ({names}); every unit needs at least "
                f"one module, which places it in the forward pass. Add the module that uses "
                f"them. {listed}")


def _blocks(module):
    """The members of ``units="blocks"``: name -> list of members (see resolve_units)."""
    groups = {}
    for name, child in module.named_children():
        if not _owns_parameters(child):
            continue
        if isinstance(child, BLOCK_CONTAINERS):
            groups.update(_children_units(child, name))
            continue
        containers = [(n, c) for n, c in child.named_children()
                      if isinstance(c, BLOCK_CONTAINERS) and _owns_parameters(c)]
        if len(containers) == 1:
            inner_name, container = containers[0]
            expanded = {}
            for n, c in child.named_children():
                if not _owns_parameters(c):
                    continue
                if c is container:
                    expanded.update(_children_units(container, f"{name}.{inner_name}"))
                else:
                    expanded[f"{name}.{n}"] = [f"{name}.{n}"]
            own = _direct_parameters(child, name + ".")
            if own and expanded:
                expanded[next(iter(expanded))] += own  # see resolve_units: they join a unit
            groups.update(expanded)
        else:
            groups[name] = [name]
    return groups


def _children_units(container, prefix):
    return {f"{prefix}.{n}": [f"{prefix}.{n}"] for n, c in container.named_children()
            if _owns_parameters(c)}


def _children(module):
    """``units="auto"``: one unit per top-level child that owns parameters."""
    return {name: [name] for name, child in module.named_children() if _owns_parameters(child)}


def _explicit_groups(units):
    """A list of module names, or a dict of named groups of members: name -> members."""
    groups = {}
    if isinstance(units, dict):
        for group, names in units.items():
            if not isinstance(group, str):
                raise ValueError(f"Unit group names must be strings, got {group!r}.")
            groups[group] = [names] if isinstance(names, str) else list(names)
        return groups
    for name in units:
        if not isinstance(name, str):
            raise ValueError(f"units must hold module names (str), got {name!r}.")
        if name in groups:
            raise ValueError(f"Unit {name!r} is listed twice.")
        groups[name] = [name]
    return groups


#: The rules ``units`` names: rule -> function(module) -> {unit name: [module names]}.
#: A new rule is its function and one line here; FlexTuner and preview_units accept it.
UNIT_RULES = {"auto": _children, "blocks": _blocks}
#: The ``units`` parameter's constraint, shared by FlexTuner and preview_units.
UNITS_CONSTRAINT = [StrOptions(set(UNIT_RULES)), list, tuple, dict]


def resolve_units(module, units, probe):
    """Turn the ``units`` parameter into a list of :class:`Unit` in forward order.

    Parameters
    ----------
    module : torch.nn.Module
        The network, with materialized parameters.
    units : "auto", "blocks", list of str or dict of str to list of str
        ``"auto"``: the top-level children that own parameters. ``"blocks"``:
        the same, except that a block container (``nn.Sequential`` or
        ``nn.ModuleList``) contributes one unit per child that owns
        parameters, and a child holding exactly one such container among
        its children (torchvision's ``encoder.layers``) is expanded into the
        container's blocks, its other parts becoming units of their own. A
        list: one unit per (dotted) module name. A dict: named groups of
        members, each a module name or the name of a parameter held
        directly by a module (``"cls_token"``). With ``"auto"`` and
        ``"blocks"``, parameters held directly by the root (or by an
        expanded child) join the first unit made from it, in forward order.
    probe : torch.Tensor
        A small input batch; the forward pass on it gives the order.

    Returns
    -------
    list of Unit
    """
    automatic = isinstance(units, str)
    if automatic:  # a rule of UNIT_RULES, checked by the parameter constraints
        groups = UNIT_RULES[units](module)
        for name in groups:
            if name in RESERVED_NAMES:
                raise ValueError(
                    f"The network has a child module named {name!r}, a reserved unit name; "
                    f"pass units explicitly.")
    else:
        groups = _explicit_groups(units)
    if not groups and not automatic:
        raise ValueError("units is empty: list at least one module (or pass units='auto').")
    if not groups:
        if any(True for _ in module.parameters()):
            raise ValueError(
                f"The network ({type(module).__name__}) has no submodule that owns parameters: "
                f"its parameters belong to the root module itself, so it has no units to "
                f"choose from. Wrap its layers in submodules, e.g. nn.Sequential(layer).")
        raise ValueError("The network has no parameters: nothing to tune.")
    _check_names(module, groups)

    submodules = dict(module.named_modules())
    member_modules = [n for names in groups.values() for n in names if n in submodules]
    called, never_called = forward_order(module, probe, member_modules)
    if never_called and automatic:
        warnings.warn(f"Children {never_called} own parameters but are not called in the "
                      f"forward pass; they belong to no unit.", UserWarning)
        groups = {g: names for g, names in groups.items()
                  if not any(n in never_called for n in names)}
    elif never_called:
        called_names = [name for name in valid_names(module) if name not in never_called
                        and not any(name.startswith(n + ".") for n in never_called)]
        raise ValueError(
            f"Modules {never_called} are not called in the forward pass, so tuning them "
            f"cannot change the output. Leave them out of units. "
            f"{_describe_names(called_names)}")
    rank = {name: position for position, name in enumerate(called)}

    def first_call(names):
        return min(rank[n] for n in names if n in submodules)

    ordered = sorted(groups.items(), key=lambda item: first_call(item[1]))
    result = [Unit(group, tuple(sorted((n for n in names if n in submodules),
                                       key=rank.__getitem__)),
                   tuple(n for n in names if n not in submodules))
              for group, names in ordered]
    if automatic:  # parameters of the root itself join the first unit
        root = tuple(_direct_parameters(module))
        if root and result:
            first = result[0]
            result[0] = Unit(first.name, first.modules, first.params + root)
    return result
