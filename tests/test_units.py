"""Splitting networks into units: auto, names and groups, in forward order."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from flexsk._units import resolve_units


class Backwards(nn.Module):
    """Children registered in the reverse of the order forward runs them."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.pool = nn.Identity()  # no parameters: belongs to no unit
        self.block = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8))
        self.stem = nn.Linear(4, 6)

    def forward(self, x):
        return self.head(self.pool(self.block(self.stem(x))))


PROBE = torch.zeros(2, 4)


def names(units):
    return [unit.name for unit in units]


def test_auto_uses_forward_order_not_registration_order():
    units = resolve_units(Backwards(), "auto", PROBE)
    assert names(units) == ["stem", "block", "head"]
    assert units[1].modules == ("block",)


def test_list_is_reordered_and_accepts_dotted_names():
    units = resolve_units(Backwards(), ["head", "block.2", "stem"], PROBE)
    assert names(units) == ["stem", "block.2", "head"]


def test_groups_sit_where_their_first_module_runs():
    units = resolve_units(Backwards(), {"top": ["head", "block.2"], "bottom": ["stem"]}, PROBE)
    assert names(units) == ["bottom", "top"]
    assert units[1].modules == ("block.2", "head")  # members in forward order too


def test_unit_owns_only_its_keys():
    unit = resolve_units(Backwards(), ["block.0"], PROBE)[0]
    assert unit.owns("block.0.weight")
    assert not unit.owns("block.2.weight")
    assert not unit.owns("block.0")


@pytest.mark.parametrize("units, message", [
    (["nope"], "Unknown module 'nope'"),
    (["pool"], "Unknown module 'pool'"),  # owns no parameters
    (["block", "block.0"], "overlap"),
    ({"a": ["stem"], "b": ["stem"]}, "overlap"),
    (["stem", "stem"], "listed twice"),
    ({"all": ["stem"]}, "reserved"),
    ({"ss": ["stem"]}, "reserved"),
    ({"empty": []}, "holds no modules"),
])
def test_bad_units_get_clear_errors(units, message):
    with pytest.raises(ValueError, match=message) as info:
        resolve_units(Backwards(), units, PROBE)
    if "Unknown" in message or "overlap" in message:
        assert "'block.0'" in str(info.value)  # the valid names are listed


def test_module_not_run_in_forward_is_rejected():
    net = Backwards()
    net.unused = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not called in the forward pass"):
        resolve_units(net, ["unused", "head"], PROBE)


def test_auto_skips_children_never_run_with_a_warning():
    net = Backwards()
    net.unused = nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="unused"):
        units = resolve_units(net, "auto", PROBE)
    assert names(units) == ["stem", "block", "head"]


def test_auto_rejects_a_child_named_like_a_reserved_key():
    net = nn.Sequential()
    net.add_module("all", nn.Linear(4, 2))
    with pytest.raises(ValueError, match="reserved"):
        resolve_units(net, "auto", PROBE)


def test_probe_leaves_module_mode_alone():
    net = Backwards().train()
    resolve_units(net, "auto", PROBE)
    assert net.training and all(m.training for m in net.modules())


@pytest.mark.parametrize("units", [{"all": ["stem"]}, {"empty": []}])
def test_group_errors_list_the_valid_names(units):
    module = nn.Sequential(OrderedDict(stem=nn.Linear(4, 4), head=nn.Linear(4, 2)))
    with pytest.raises(ValueError, match=r"Valid module names: \['stem', 'head'\]"):
        resolve_units(module, units, torch.zeros(2, 4))
