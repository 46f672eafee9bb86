"""Beyond the paper: pixel adapters, rgn, successive halving, several units."""

import copy
import math
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, state_hash
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner
from flexsk._training._scores import relative_gradient_norms
from flexsk._training import (Evaluation, FineTuning, Optimization, Samples, Stopping,
                              TargetData, Tuned)
from flexsk.adapters import ADAPTERS, AdaptedNet, ColorAdapter, SpatialAdapter, UNetAdapter
from flexsk.datasets import make_digits_shift, subsample_per_class
from flexsk._strategies import STRATEGIES
from flexsk._units import Unit, resolve_units
from flexsk.zoo import load_source_net

FAST = dict(max_epochs=4, patience=2, random_state=0, refit=False)  # the selection run
SINGLE_UNIT = ["flex", "fast", "faster", "rgn-unit", "halving"]
ADAPTER_UNITS = ["adapter_color", "adapter_spatial", "adapter_unet"]


def fit(net, target, **params):
    return FlexTuner(net, **{**FAST, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


def differing_keys(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return {k for k in sa if not torch.equal(sa[k], sb[k])}


# -- scripted schedules ----------------------------------------------------------------------


class Scripted:
    """Stands in for FineTuning. A candidate's validation accuracy is a scripted
    function of its key and of the epochs it has trained in total (its start's
    epochs plus this run's), so continuing a candidate is visible."""

    def __init__(self, score, units=("conv1", "conv2", "fc1", "fc2"), max_epochs=50,
                 proxy=None, rgn=None):
        self.units = [Unit(name, (name,)) for name in units]
        self.stopping = Stopping(max_epochs=max_epochs, patience=3)
        self.score_of = score
        self.proxy = proxy or {}
        self.rgn = rgn or {}
        self.calls = []
        self.prefetched = []

    def tune(self, key, *, start=None, stopping=None, keep_best=True):
        before = 0 if start is None else start.epochs
        epochs = (self.stopping if stopping is None else stopping).max_epochs
        self.calls.append(dict(key=key, start=start, before=before,
                               max_epochs=None if stopping is None else stopping.max_epochs,
                               patience=(self.stopping if stopping is None else
                                         stopping).patience))
        history = [Evaluation(self.score_of(key, before + e), 1.0) for e in range(epochs + 1)]
        best = int(np.argmax([h.accuracy for h in history]))
        module = nn.Linear(1, 1)
        module.key, module.epochs = key, before + epochs
        return Tuned(module, history[best], epochs, best, history=history)

    def tune_many(self, keys):
        return {key: self.tune(key) for key in keys}

    def prefetch(self, keys):
        self.prefetched.append(list(keys))

    def proxy_evaluations(self, donor):
        self.calls.append(dict(key="proxies"))
        return {k: Evaluation(v, 1.0) for k, v in self.proxy.items()}

    def relative_gradient_norms(self):
        self.calls.append(dict(key="rgn"))
        return dict(self.rgn)


def linear_scores(table):
    """key -> (a, b): accuracy a + b * epochs, capped at 0.99."""
    return lambda key, epochs: min(0.99, table[key][0] + table[key][1] * epochs)


def test_halving_rung_schedule():
    ft = Scripted(linear_scores({
        "conv1": (0.50, 0.0), "conv2": (0.50, 0.02), "fc1": (0.45, 0.04),
        "fc2": (0.55, 0.0), "all": (0.30, 0.05)}))
    outcome = STRATEGIES["halving"](ft, halving_factor=2, halving_min_epochs=2)
    rungs = [(c["key"], c["before"], c["max_epochs"], c["patience"]) for c in ft.calls]
    assert rungs == [
        # rung 0: all L + 1 candidates, 2 epochs, from the pretrained weights
        ("conv1", 0, 2, None), ("conv2", 0, 2, None), ("fc1", 0, 2, None),
        ("fc2", 0, 2, None), ("all", 0, 2, None),
        # rung 1: the best ceil(5 / 2) = 3 (fc2 .55, conv2 .54, fc1 .53), up to 4 epochs
        ("fc2", 2, 2, None), ("conv2", 2, 2, None), ("fc1", 2, 2, None),
        # rung 2: the best 2 (fc1 .61, conv2 .58), up to 8 epochs
        ("fc1", 4, 4, None), ("conv2", 4, 4, None),
        # one left: early stopping for the rest of max_epochs
        ("fc1", 8, 42, 3)]
    assert all(c["start"] is None for c in ft.calls[:5])
    assert ft.prefetched == [["conv1", "conv2", "fc1", "fc2", "all"]]  # one cache pass
    assert all(c["start"].key == c["key"] for c in ft.calls[5:])  # continued, not restarted
    assert outcome.selected == "fc1"
    assert len(ft.calls) == STRATEGIES["halving"].total_runs(4, halving_factor=2)
    tuned = outcome.tuned
    assert {k: t.n_epochs for k, t in tuned.items()} == {
        "conv1": 2, "conv2": 8, "fc1": 50, "fc2": 4, "all": 2}
    assert {k: v.accuracy for k, v in outcome.proxy_scores.items()} == pytest.approx(
        {"conv1": 0.50, "conv2": 0.66, "fc1": 0.99, "fc2": 0.55})
    assert list(outcome.proxy_scores) == ["conv1", "conv2", "fc1", "fc2"]
    assert len(tuned["conv2"].history) == 9  # epochs 0..8 over three rungs
    assert tuned["conv2"].history[4].accuracy == pytest.approx(0.58)


def test_halving_ties_go_to_the_earliest_unit_and_a_unit_beats_all():
    ft = Scripted(lambda key, epochs: 0.5)
    outcome = STRATEGIES["halving"](ft, halving_factor=2, halving_min_epochs=2)
    assert [c["key"] for c in ft.calls[5:8]] == ["conv1", "conv2", "fc1"]
    assert outcome.selected == "conv1"
    one_unit = Scripted(lambda key, epochs: 0.5, units=("fc2",))
    assert STRATEGIES["halving"](one_unit).selected == "fc2"
    better_all = Scripted(lambda key, epochs: 0.9 if key == "all" else 0.5, units=("fc2",))
    assert STRATEGIES["halving"](better_all).selected == "all"


def test_halving_budget_is_capped_by_max_epochs():
    ft = Scripted(linear_scores({k: (0.5, 0.01 * i) for i, k in
                                 enumerate(["conv1", "conv2", "fc1", "fc2", "all"])}),
                  max_epochs=3)
    outcome = STRATEGIES["halving"](ft, halving_factor=2, halving_min_epochs=2)
    # rung 0: 2 epochs; rung 1: 1 more (capped at 3); rung 2: none left; no last run
    assert [c["max_epochs"] for c in ft.calls] == [2] * 5 + [1] * 3
    assert outcome.selected == "all"
    assert all(t.n_epochs <= 3 for t in outcome.tuned.values())


@pytest.mark.parametrize("factor, n_units, sizes", [
    (3, 7, [8, 3, 1]),          # 8 candidates -> ceil(8/3)=3 -> 1, then the last run
    (1.5, 4, [5, 4, 3, 2, 1]),  # always at least one fewer per rung
])
def test_halving_factor(factor, n_units, sizes):
    names = [f"u{i}" for i in range(n_units)]
    ft = Scripted(lambda key, epochs: 0.5, units=names)
    STRATEGIES["halving"](ft, halving_factor=factor, halving_min_epochs=1)
    budgets = []  # cumulative epochs each rung trains to
    for c in ft.calls:
        budgets.append(c["before"] + c["max_epochs"])
    per_rung = [sum(1 for c in ft.calls if c["before"] == b) for b in sorted(
        {c["before"] for c in ft.calls})]
    assert per_rung == sizes
    expected = [math.ceil(factor ** i) for i in range(len(sizes) - 1)]
    assert sorted(set(budgets[:-1])) == expected
    assert len(ft.calls) == STRATEGIES["halving"].total_runs(n_units, halving_factor=factor)


def test_rgn_schedule_tunes_the_highest_ratio_from_pretrained():
    ft = Scripted(lambda key, epochs: 0.5,
                  rgn={"conv1": 0.2, "conv2": 0.7, "fc1": 0.7, "fc2": 0.1})
    outcome = STRATEGIES["rgn-unit"](ft)
    assert [c["key"] for c in ft.calls] == ["rgn", "conv2"]  # earliest of the tie
    assert ft.calls[1]["start"] is None and ft.calls[1]["max_epochs"] is None
    assert outcome.selected == "conv2" and set(outcome.tuned) == {"conv2"}
    assert outcome.proxy_scores == {"conv1": 0.2, "conv2": 0.7, "fc1": 0.7, "fc2": 0.1}


# -- several units ---------------------------------------------------------------------------


def pair_scores(singles, pairs, default=0.3):
    table = {**singles, **pairs}
    return lambda key, epochs: table.get(key, default) if epochs else 0.1


SINGLES = {"conv1": 0.5, "conv2": 0.5, "fc1": 0.75, "fc2": 0.5, "all": 0.6}
PROXY = {"conv1": 0.1, "conv2": 0.1, "fc1": 0.9, "fc2": 0.1}


@pytest.mark.parametrize("strategy", SINGLE_UNIT)
def test_every_single_unit_strategy_grows_to_the_best_pair(strategy):
    ft = Scripted(pair_scores(SINGLES, {("conv2", "fc1"): 0.9, ("fc1", "fc2"): 0.8}),
                  proxy=PROXY, rgn=PROXY)
    outcome = STRATEGIES[strategy](ft, max_units=2, pair_margin=0.01)
    pairs = [c for c in ft.calls if isinstance(c["key"], tuple)]
    # every other unit added to fc1, keys in forward order, trained from pretrained
    assert [c["key"] for c in pairs] == [("conv1", "fc1"), ("conv2", "fc1"), ("fc1", "fc2")]
    assert all(c["start"] is None and c["max_epochs"] is None for c in pairs)
    assert outcome.selected == ("conv2", "fc1")
    assert outcome.tuned[("conv2", "fc1")].val_score == 0.9
    assert "fc1" in outcome.tuned  # the single unit stays a candidate
    without = Scripted(ft.score_of, proxy=PROXY, rgn=PROXY)
    assert STRATEGIES[strategy](without).selected == "fc1"  # max_units=1: no pairs
    assert not any(isinstance(c["key"], tuple) for c in without.calls)


@pytest.mark.parametrize("pair, kept", [(0.875, False), (0.876, True), (0.7, False)])
def test_pair_margin_is_strict(pair, kept):
    ft = Scripted(pair_scores(SINGLES, {("fc1", "fc2"): pair}))
    outcome = STRATEGIES["flex"](ft, max_units=2, pair_margin=0.125)  # 0.75 + 0.125 = 0.875
    assert outcome.selected == (("fc1", "fc2") if kept else "fc1")


def test_pair_ties_go_to_the_earliest_added_unit():
    ft = Scripted(pair_scores(SINGLES, {("conv1", "fc1"): 0.9, ("fc1", "fc2"): 0.9}))
    assert STRATEGIES["flex"](ft, max_units=2).selected == ("conv1", "fc1")


def test_no_pair_when_all_wins():
    ft = Scripted(pair_scores({**SINGLES, "all": 0.8}, {("conv1", "fc1"): 0.99}))
    outcome = STRATEGIES["flex"](ft, max_units=2)
    assert outcome.selected == "all"
    assert not any(isinstance(c["key"], tuple) for c in ft.calls)


def test_greedy_growth_to_three_units_stops_without_gain():
    pairs = {("conv2", "fc1"): 0.85, ("conv1", "conv2", "fc1"): 0.95,
             ("conv2", "fc1", "fc2"): 0.9}
    ft = Scripted(pair_scores(SINGLES, pairs))
    outcome = STRATEGIES["flex"](ft, max_units=3)
    assert outcome.selected == ("conv1", "conv2", "fc1")
    triples = [c["key"] for c in ft.calls if isinstance(c["key"], tuple) and len(c["key"]) == 3]
    assert triples == [("conv1", "conv2", "fc1"), ("conv2", "fc1", "fc2")]
    stop = Scripted(pair_scores(SINGLES, {("conv2", "fc1"): 0.85}))  # triples 0.3
    assert STRATEGIES["flex"](stop, max_units=4).selected == ("conv2", "fc1")
    assert max(len(c["key"]) for c in stop.calls if isinstance(c["key"], tuple)) == 3


@pytest.mark.parametrize("strategy", ["ft-all", "ft-fc", "ft-ss"])
def test_max_units_with_a_baseline_raises(conv4, target, strategy):
    with pytest.raises(ValueError, match="max_units=2 grows the single unit"):
        fit(conv4, target, strategy=strategy, max_units=2)


def test_two_units_end_to_end(conv4, target):
    tuner = fit(conv4, target, strategy="rgn-unit", max_units=2, pair_margin=0.0,
                keep_candidates=True)
    first = next(k for k in tuner.validation_scores_ if isinstance(k, str))
    pairs = [k for k in tuner.validation_scores_ if isinstance(k, tuple)]
    order = tuner.units_
    assert len(pairs) == len(order) - 1 and all(first in p for p in pairs)
    assert all(list(p) == sorted(p, key=order.index) for p in pairs)
    for pair in pairs:  # a pair changes exactly its two units
        changed = {k.split(".")[0] for k in differing_keys(conv4.module_,
                                                           tuner.candidates_[pair])}
        assert changed == set(pair)
    selected = tuner.selected_unit_
    best_pair = max(pairs, key=lambda p: tuner.validation_scores_[p])
    if tuner.validation_scores_[best_pair] > tuner.validation_scores_[first]:
        assert isinstance(selected, tuple)
    assert tuner.validation_scores_[selected] == max(tuner.validation_scores_.values())


# -- relative gradient norms -----------------------------------------------------------------


def _fine_tuning(module, X, y, batch_size, n_classes):
    X, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    units = resolve_units(module, "auto", X[:2])
    data = TargetData(train=Samples(X, y), val=Samples(X, y), classes=torch.arange(n_classes))
    optimization = Optimization(
        optimizer=torch.optim.Adam, optimizer_kwargs={}, lr=1e-2, batch_size=batch_size,
        stopping=Stopping(max_epochs=2), get_loss=nn.functional.cross_entropy,
        probabilities=False)
    return FineTuning(module, units, data, optimization, base_seed=0, cache=False)


def _two_linear(scale=1.0):
    torch.manual_seed(3)
    module = nn.Sequential(OrderedDict(a=nn.Linear(3, 4, bias=False),
                                       b=nn.Linear(4, 2, bias=False)))
    with torch.no_grad():
        module.a.weight.mul_(scale)
        module.b.weight.div_(scale)
    return module


def _toy_data(n=12):
    rng = np.random.RandomState(0)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.randint(0, 2, size=n)


def test_rgn_matches_the_closed_form_gradient():
    X, y = _toy_data()
    module = _two_linear()
    A = module.a.weight.detach().double().numpy()
    B = module.b.weight.detach().double().numpy()
    h = X.astype(np.float64) @ A.T
    z = h @ B.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(2)[y]) / len(y)  # d(mean cross-entropy) / d logits
    grad_b = delta.T @ h
    grad_a = (delta @ B).T @ X
    expected = {"a": np.linalg.norm(grad_a) / np.linalg.norm(A),
                "b": np.linalg.norm(grad_b) / np.linalg.norm(B)}
    scores = relative_gradient_norms(_fine_tuning(module, X, y, batch_size=len(y),
                                                  n_classes=2))
    assert list(scores) == ["a", "b"]
    assert scores == pytest.approx(expected, rel=1e-4)


def test_rgn_follows_a_function_preserving_rescaling():
    # a -> c a, b -> b / c keeps the function: grad a scales 1/c, ||a|| scales c,
    # so a's ratio scales 1/c**2 and b's c**2, on the same minibatches.
    X, y = _toy_data(40)
    base = relative_gradient_norms(_fine_tuning(_two_linear(), X, y, 16, 2))
    scaled = relative_gradient_norms(_fine_tuning(_two_linear(10.0), X, y, 16, 2))
    assert scaled["a"] == pytest.approx(base["a"] / 100, rel=1e-3)
    assert scaled["b"] == pytest.approx(base["b"] * 100, rel=1e-3)
    for scale, top in [(0.1, "a"), (10.0, "b")]:
        ft = _fine_tuning(_two_linear(scale), X, y, 16, 2)
        outcome = STRATEGIES["rgn-unit"](ft)
        assert outcome.selected == top
        changed = differing_keys(ft.pretrained, outcome.model.module)
        assert changed == {f"{top}.weight"}


def test_rgn_costs_at_most_one_epoch_and_trains_nothing():
    X, y = _toy_data(40)  # 16 + 16 + 8: three minibatches per epoch
    module = _two_linear()
    ft = _fine_tuning(module, X, y, 16, 2)
    calls = []
    module.register_forward_pre_hook(lambda mod, args: calls.append(len(args[0])))
    before = state_hash(module)
    relative_gradient_norms(ft, n_batches=10)
    assert sorted(calls) == [8, 16, 16]
    calls.clear()
    relative_gradient_norms(ft, n_batches=2)
    assert calls == [16, 16]
    assert state_hash(module) == before
    assert all(p.grad is None for p in module.parameters())


def test_rgn_runs_the_net_in_eval_mode():
    torch.manual_seed(0)
    module = nn.Sequential(OrderedDict(a=nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
                                       b=nn.Linear(4, 2)))
    with torch.no_grad():  # running statistics far from any batch's
        module.a[1].running_mean.fill_(3.0)
        module.a[1].running_var.fill_(0.25)
        module.a[1].bias.fill_(0.1)  # a zero-norm tensor would have no ratio
    X, y = _toy_data()
    ft = _fine_tuning(module, X, y, len(y), 2)
    before = state_hash(module)
    scores = relative_gradient_norms(ft)
    assert state_hash(module) == before

    def by_hand(train):
        copy_ = copy.deepcopy(module).train(train)
        loss = nn.functional.cross_entropy(copy_(torch.as_tensor(X)), torch.as_tensor(y))
        loss.backward()
        ratios = {n: (p.grad.norm() / p.norm()).item() for n, p in copy_.named_parameters()}
        return {u: np.mean([r for n, r in ratios.items() if n.startswith(u + ".")])
                for u in ("a", "b")}

    assert scores == pytest.approx(by_hand(False), rel=1e-4)
    assert scores != pytest.approx(by_hand(True), rel=1e-2)


def test_rgn_end_to_end_changes_only_the_tuned_unit(conv7, target):
    before = state_hash(conv7.module_)
    tuner = fit(conv7, target, strategy="rgn-unit")
    assert list(tuner.proxy_scores_) == tuner.units_
    assert all(score > 0 for score in tuner.proxy_scores_.values())
    assert tuner.selected_unit_ == max(tuner.proxy_scores_, key=tuner.proxy_scores_.get)
    assert set(tuner.validation_scores_) == {tuner.selected_unit_}
    changed = differing_keys(conv7.module_, tuner.net_.module_)
    assert changed and all(k.startswith(tuner.selected_unit_ + ".") for k in changed)
    assert state_hash(conv7.module_) == before


def test_halving_end_to_end(conv4, target):
    tuner = fit(conv4, target, strategy="halving", max_epochs=6, halving_min_epochs=1,
                halving_factor=2)
    assert set(tuner.validation_scores_) == set(tuner.units_) | {"all"}
    assert tuner.n_epochs_[tuner.selected_unit_] <= 6
    assert sorted(tuner.n_epochs_.values())[0] == 1  # eliminated after rung 0
    accuracy = np.mean(tuner.predict(target["X_val"]) == target["y_val"])
    assert accuracy == pytest.approx(tuner.validation_scores_[tuner.selected_unit_])
    if tuner.selected_unit_ != "all":
        changed = differing_keys(conv4.module_, tuner.net_.module_)
        assert all(k.startswith(tuner.selected_unit_ + ".") for k in changed)


@pytest.mark.parametrize("params", [
    dict(max_units=0), dict(pair_margin=-0.1), dict(pair_margin=2.0), dict(halving_factor=1),
    dict(halving_min_epochs=0), dict(pixel_adapter="pix2pix"), dict(strategy="autorgn"),
])
def test_bad_new_parameters(conv4, target, params):
    with pytest.raises(InvalidParameterError):
        FlexTuner(conv4, **params).fit(target["X"], target["y"])


# -- pixel adapters --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(ADAPTERS.values()))
@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 9, 13), (1, 5, 16, 8)])
def test_adapters_start_as_the_identity(cls, shape):
    x = torch.rand(shape) * 4 - 2
    adapter = cls(shape[1])
    assert torch.equal(adapter(x), x)
    adapter(x).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())


@pytest.mark.parametrize("cls", list(ADAPTERS.values()))
def test_adapters_reject_non_images(cls):
    with pytest.raises(ValueError, match=r"2D images.*shape \(4, 3\)"):
        cls(3)(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least 8 x 8"):
        cls(1)(torch.zeros(2, 1, 4, 8))
    with pytest.raises(ValueError, match="built for 1 channels"):
        cls(1)(torch.zeros(2, 3, 8, 8))


def test_adapters_learn_their_shift():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 8, 8)
    color = ColorAdapter(3)
    with torch.no_grad():
        color.weight_delta.copy_(torch.eye(3).flip(0).reshape(3, 3, 1, 1) / color.gain
                                 - torch.eye(3).reshape(3, 3, 1, 1) / color.gain)
    assert torch.allclose(color(x), x.flip(1))  # a channel permutation
    spatial = SpatialAdapter(3)
    with torch.no_grad():  # theta = [[-1, 0, 0], [0, 1, 0]]: a horizontal mirror
        spatial.theta.bias.copy_(torch.tensor([-2.0, 0, 0, 0, 0, 0]) / spatial.gain)
    assert torch.allclose(spatial(x), x.flip(3), atol=1e-5)
    unet = UNetAdapter(3)
    with torch.no_grad():
        unet.out.bias.fill_(0.5)
    assert torch.allclose(unet(x), x + 0.5)


@pytest.mark.parametrize("kind", ["color", "spatial", "unet", "auto"])
def test_adapted_net_equals_the_pretrained_net(conv7, target, kind):
    # exact in the pretrained net's own memory format (another one rounds differently)
    tuner = fit(conv7, target, strategy="ft-fc", pixel_adapter=kind, max_epochs=1,
                channels_last=False)
    wrapped = tuner._pretrained
    assert isinstance(wrapped, AdaptedNet)
    X = torch.as_tensor(target["X_test"])
    with torch.no_grad():
        assert torch.equal(wrapped.eval()(X), conv7.module_.eval()(X))
    np.testing.assert_array_equal(tuner.pretrained_transform(target["X_test"]),
                                  FlexTuner(conv7, strategy="ft-fc", max_epochs=1,
                                            channels_last=False).fit(
                                      target["X"], target["y"]).pretrained_transform(
                                      target["X_test"]))


@pytest.mark.parametrize("strategy", ["flex", "fast", "faster"])
def test_adapters_are_units_of_every_strategy(conv4, target, strategy):
    before = state_hash(conv4.module_)
    tuner = fit(conv4, target, strategy=strategy, pixel_adapter="auto")
    assert tuner.units_ == ADAPTER_UNITS + ["conv1", "conv2", "fc1", "fc2"]
    assert list(tuner.proxy_scores_) == tuner.units_
    if strategy == "flex":
        assert set(tuner.validation_scores_) == set(tuner.units_) | {"all"}
    assert isinstance(tuner.net_.module_, AdaptedNet)
    assert state_hash(conv4.module_) == before


def test_all_trains_the_adapter(conv4, target):
    tuner = fit(conv4, target, strategy="ft-all", pixel_adapter="color", max_epochs=2,
                patience=None)
    adapter = tuner.net_.module_.adapter_color
    assert not torch.equal(adapter.weight, torch.eye(1).reshape(1, 1, 1, 1))
    changed = differing_keys(conv4.module_, tuner.net_.module_.net)
    assert any(k.startswith("conv1.") for k in changed)


def test_adapter_units_with_explicit_units(conv4, target):
    tuner = fit(conv4, target, strategy="flex", pixel_adapter="unet", units=["conv2", "fc2"],
                max_epochs=1, keep_candidates=True)
    assert tuner.units_ == ["adapter_unet", "conv2", "fc2"]
    pretrained = tuner._pretrained
    only = differing_keys(pretrained, tuner.candidates_["adapter_unet"])
    assert all(k.startswith("adapter_unet.") for k in only)
    only = differing_keys(pretrained, tuner.candidates_["conv2"])
    assert only and all(k.startswith("net.conv2.") for k in only)
    with pytest.raises(ValueError, match="taken by pixel_adapter"):
        fit(conv4, target, pixel_adapter="unet", units={"adapter_unet": ["conv1"]})


def test_adapter_needs_images(target):
    module = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(64, 10)))
    net = NeuralNetClassifier(module, lr=1e-3, optimizer=torch.optim.Adam,
                              criterion=nn.CrossEntropyLoss)
    X = target["X"].reshape(len(target["X"]), -1)
    with pytest.raises(ValueError, match=r"2D images.*\(n_samples, 64\)"):
        FlexTuner(net, pixel_adapter="color", **FAST).fit(X, target["y"])


def test_fitted_adapter_transform_pickle_clone(conv4, target):
    tuner = fit(conv4, target, strategy="fast", pixel_adapter="auto")
    X = target["X_test"]
    module = tuner.net_.module_
    with torch.no_grad():
        x = torch.as_tensor(X)
        for name in ADAPTER_UNITS:
            x = getattr(module, name)(x)
        inner = module.net
        expected = inner.fc1(inner.flatten(inner.conv2(inner.conv1(x))))
    np.testing.assert_allclose(tuner.transform(X), expected.numpy(), rtol=1e-5, atol=1e-6)
    proba = tuner.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    restored = pickle.loads(pickle.dumps(tuner))
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    np.testing.assert_array_equal(restored.transform(X), tuner.transform(X))
    cloned = clone(tuner)
    assert cloned.pixel_adapter == "auto" and not hasattr(cloned, "net_")
    refit = cloned.fit(target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    np.testing.assert_array_equal(refit.predict_proba(X), proba)


@pytest.fixture(scope="module")
def colour_shift(cache_dir):
    net = load_source_net("conv4", n_channels=3, image_size=IMAGE_SIZE, cache_dir=cache_dir)
    bunch = make_digits_shift("colorspace", image_size=IMAGE_SIZE, random_state=0)
    train = np.flatnonzero(bunch.split == "train")
    train = train[subsample_per_class(bunch.target[train], 10, random_state=0)]
    val = np.flatnonzero(bunch.split == "val")
    return net, dict(X=bunch.data[train], y=bunch.target[train], X_val=bunch.data[val],
                     y_val=bunch.target[val])


def test_color_adapter_alone_undoes_a_colour_space_shift(colour_shift):
    net, data = colour_shift
    pretrained = np.mean(net.predict(data["X_val"]) == data["y_val"])
    tuner = fit(net, data, strategy="flex", pixel_adapter="color", max_epochs=10,
                patience=3, keep_candidates=True)
    assert tuner.validation_scores_["adapter_color"] > pretrained + 0.15
    changed = differing_keys(tuner._pretrained, tuner.candidates_["adapter_color"])
    assert changed == {"adapter_color.weight_delta", "adapter_color.bias_delta"}
