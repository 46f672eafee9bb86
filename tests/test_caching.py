"""Activation caching and shared proxy passes give the same results as full passes."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import UnitCalls
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner
from flexsk._surgery import Cuts
from flexsk._units import resolve_units
from flexsk.strategies import Outcome

FAST = dict(max_epochs=6, patience=3, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**FAST, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


def assert_same_fit(a, b, X):
    assert a.selected_unit_ == b.selected_unit_
    assert a.proxy_scores_ == b.proxy_scores_
    assert a.validation_scores_ == b.validation_scores_
    assert a.n_epochs_ == b.n_epochs_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("strategy", ["flex", "fast", "faster"])
def test_cache_on_and_off_give_identical_fits(conv7, target, strategy):
    cached = fit(conv7, target, strategy=strategy, activation_cache=True)
    uncached = fit(conv7, target, strategy=strategy, activation_cache=False)
    assert_same_fit(cached, uncached, target["X_test"])


def test_cache_is_used_and_respects_the_budget(conv7, target):
    seen = UnitCalls(conv7)
    units = fit(conv7, target, strategy="ft-fc", on_epoch=seen.on_epoch).units_
    assert len(units) == 7
    # the selection run and the refit of fc2: only fc2 ran, on its cached inputs
    assert seen.runs() == [("fc2", False, {"fc2"}), ("fc2", True, {"fc2"})]
    for params in (dict(activation_cache_bytes=0), dict(activation_cache=False)):
        seen.events.clear()
        fit(conv7, target, strategy="ft-fc", on_epoch=seen.on_epoch, **params)
        assert seen.runs() == [("fc2", False, set(units)), ("fc2", True, set(units))]


class Branchy(nn.Module):
    """Data-dependent control flow: cannot be traced, so never cut."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        h = self.conv(x).flatten(1)
        if h.sum() > 0:  # control flow on data
            h = torch.relu(self.fc1(h))
        else:
            h = torch.tanh(self.fc1(h))
        return self.fc2(h)


class GlobalSkip(nn.Module):
    """The input is used again late: fc1 cannot be cut, fc2 (after the join) can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.fc2 = nn.Linear(16 + 64, 10)

    def forward(self, x):
        h = torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1)))
        return self.fc2(torch.cat([h, x.flatten(1)], dim=1))


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


def resnetish():
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()),
        layer1=nn.Sequential(Residual(8), Residual(8)),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(8, 10)))


PROBE = torch.rand(2, 1, 8, 8)


def test_untraceable_net_has_no_cuts():
    module = Branchy().eval()
    units = resolve_units(module, "auto", PROBE)
    assert not any(unit.name in Cuts(module, units, PROBE) for unit in units)


def test_cut_only_where_one_tensor_crosses():
    module = GlobalSkip().eval()
    cuts = Cuts(module, resolve_units(module, "auto", PROBE), PROBE)
    assert "conv" not in cuts  # nothing before the first unit
    assert "fc1" not in cuts  # x crosses the cut too
    assert "fc2" in cuts  # only the concatenation crosses


def test_cuts_inside_nested_blocks_reproduce_the_net():
    module = resnetish().eval()
    units = resolve_units(module, ["stem", "layer1.0", "layer1.1", "fc"], PROBE)
    cuts = Cuts(module, units, PROBE)
    assert all(name in cuts for name in ["layer1.0", "layer1.1", "fc"])
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        for name in ["layer1.0", "layer1.1", "fc"]:
            out = cuts.suffix(module, name)(cuts.prefix(module, name)(x))
            torch.testing.assert_close(out, module(x))


@pytest.mark.parametrize("make_module", [Branchy, GlobalSkip, resnetish])
@pytest.mark.parametrize("strategy", ["flex", "fast"])
def test_fallback_and_partial_cuts_match_uncached(target, make_module, strategy):
    def net():
        torch.manual_seed(0)
        return NeuralNetClassifier(make_module(), criterion=nn.CrossEntropyLoss,
                                   optimizer=torch.optim.Adam, lr=1e-2, batch_size=16)

    a = fit(net(), target, strategy=strategy, activation_cache=True)
    b = fit(net(), target, strategy=strategy, activation_cache=False)
    assert_same_fit(a, b, target["X_test"])


def test_continuing_from_tuned_weights_caches_only_when_the_prefix_is_pretrained(
        conv7, target):
    def continuing(ctx):
        one_epoch = ctx.stopping.replace(max_epochs=1)
        first = ctx.tune("conv3", stopping=one_epoch)
        # continuing conv3's own training: its prefix is still pretrained, so cached
        again = ctx.tune("conv3", start=first.module, stopping=one_epoch)
        # a start whose conv2 moved: the cached conv3 inputs would be wrong
        moved = ctx.tune("conv2", stopping=one_epoch).module
        ctx.tune("conv3", start=moved, stopping=one_epoch)
        return Outcome("conv3", {"conv3": again})

    seen = UnitCalls(conv7)
    tuner = fit(conv7, target, strategy=continuing, refit=False, on_epoch=seen.on_epoch)
    units = tuner.units_
    assert units[1:3] == ["conv2", "conv3"]
    assert seen.runs() == [
        ("conv3", False, set(units[2:])),
        ("conv3", False, set(units[2:])),  # cached
        ("conv2", False, set(units[1:])),
        ("conv3", False, set(units)),  # ran uncached
    ]
    assert tuner.n_epochs_ == {"conv3": 1}
