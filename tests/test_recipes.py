"""The recipes practitioners use, each checked against its source: Auto-RGN, LP-FT, LLRD."""

import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner
from flexsk.strategies import Outcome, seed_for

FAST = dict(max_epochs=3, patience=2, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**FAST, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


def _bn_net():
    """A small net whose BatchNorm is named ``bn``, as the Auto-RGN authors' nets name it."""
    torch.manual_seed(0)
    module = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 4, 3, padding=1), bn=nn.BatchNorm2d(4), relu=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(2), flatten=nn.Flatten(), fc=nn.Linear(16, 10)))
    return NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss,
                               optimizer=torch.optim.Adam, lr=1e-3, batch_size=16).initialize()


def _reference_lr_weights(model, batches):
    """The authors' ``get_lr_weights`` (surgical fine-tuning, main.py), written anew: the
    mean over minibatches of ||grad|| / ||param|| of every tensor not named ``bn``,
    divided by the largest; the model in training mode, no step."""
    names = [n for n, _ in model.named_parameters() if "bn" not in n]
    metrics = {n: [] for n in names}
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
        for (name, param), grad in zip(model.named_parameters(), grads):
            if name in metrics:
                metrics[name].append((grad.norm() / param.norm()).item())
    means = {n: float(np.mean(v)) for n, v in metrics.items()}
    top = max(means.values())
    return {n: v / top for n, v in means.items()}


def test_auto_rgn_weights_are_those_of_the_authors_code(target):
    from flexsk._strategies.recipes import RGN_BATCHES, rgn_scales

    seen = {}

    def spy(ctx):  # the weights Auto-RGN asks for, before its first epoch
        module = copy.deepcopy(ctx.pretrained).train()
        seen["scales"] = rgn_scales(ctx, copy.deepcopy(module), 0)
        generator = torch.Generator().manual_seed(seed_for(ctx.base_seed, ("auto-rgn", 0)))
        batches = []
        for batch in ctx.data.train.train_batches(ctx.optimization.batch_size, generator):
            batches.append(batch)
            if len(batches) == RGN_BATCHES:
                break
        seen["reference"] = _reference_lr_weights(module, batches)
        return Outcome("fc", {"fc": ctx.tune("fc")})

    fit(_bn_net(), target, strategy=spy, max_epochs=1)
    scales, reference = seen["scales"], seen["reference"]
    assert set(reference) == {"conv.weight", "conv.bias", "fc.weight", "fc.bias"}
    for name, weight in reference.items():
        assert scales[name] == pytest.approx(weight, rel=1e-5)
    assert scales["bn.weight"] == scales["bn.bias"] == 0.0  # BatchNorm does not train
    assert max(scales.values()) == pytest.approx(1.0)


def test_auto_rgn_asks_again_before_every_epoch_and_leaves_batchnorm_weights(target):
    records = []
    net = _bn_net()
    tuner = fit(net, target, strategy="auto-rgn", max_epochs=3, patience=None, refit=False,
                on_epoch=records.append)
    assert tuner.selected_unit_ == "auto-rgn"
    lrs = [r.lr for r in records if r.epoch > 0]
    assert len(lrs) == 3 and len(set(lrs)) == 3  # new factors each epoch
    assert torch.equal(tuner.net_.module_.bn.weight, net.module_.bn.weight)
    assert not torch.equal(tuner.net_.module_.conv.weight, net.module_.conv.weight)


def test_llrd_learning_rates_are_timms_for_the_same_decay(conv4, target):
    from flexsk._strategies.recipes import layer_decay_scales

    seen = {}

    def spy(ctx):
        seen["scales"] = layer_decay_scales(ctx, 0.7)
        return Outcome("fc2", {"fc2": ctx.tune("fc2")})

    fit(conv4, target, strategy=spy, max_epochs=1)
    # timm's param_groups_layer_decay: group i of 0..layer_max gets decay ** (layer_max - i)
    layer_max = 3
    groups = {"conv1": 0, "conv2": 1, "fc1": 2, "fc2": 3}
    for name, scale in seen["scales"].items():
        assert scale == pytest.approx(0.7 ** (layer_max - groups[name.split(".")[0]]))


def test_llrd_trains_every_unit_at_its_decayed_rate(conv4, target):
    records = []
    tuner = fit(conv4, target, strategy="llrd", layer_decay=0.5, refit=False,
                on_epoch=records.append)
    assert tuner.selected_unit_ == "llrd"
    assert sorted(records[1].lr) == [1e-3 / 8, 1e-3 / 4, 1e-3 / 2, 1e-3]
    changed = [name for name, p in tuner.net_.module_.named_parameters()
               if not torch.equal(p, conv4.module_.get_parameter(name))]
    assert {name.split(".")[0] for name in changed} == {"conv1", "conv2", "fc1", "fc2"}


def test_lp_ft_starts_from_the_linear_probe(conv4, target):
    words = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    settings = dict(head="new", keep_candidates=True, refit=False)
    lp_ft = FlexTuner(conv4, strategy="lp-ft", **FAST, **settings).fit(
        target["X"], words[target["y"]], X_val=target["X_val"], y_val=words[target["y_val"]])
    probe = FlexTuner(conv4, strategy="ft-fc", **FAST, **settings).fit(
        target["X"], words[target["y"]], X_val=target["X_val"], y_val=words[target["y_val"]])
    # its first stage is the linear probe, the very run of ft-fc (1)
    first = lp_ft.candidates_["fc2"].state_dict()
    assert all(torch.equal(first[k], v) for k, v in probe.candidates_["fc2"].state_dict()
               .items())
    assert lp_ft.selected_unit_ == "lp-ft"
    assert set(lp_ft.validation_scores_) == {"fc2", "lp-ft"}


def test_a_refit_trains_lp_ft_again_after_its_probe(conv4, target):
    records = []
    tuner = fit(conv4, target, strategy="lp-ft", on_epoch=records.append)
    refits = [r.candidate for r in records if r.refit and r.epoch == 0]
    best = tuner.best_epochs_
    # the probe first (unless it peaked at its start), then LP-FT from it
    assert refits == (["fc2"] if best["fc2"] else []) + (["lp-ft"] if best["lp-ft"] else [])


@pytest.mark.parametrize("candidates", [("units", "all", "lp-ft", "llrd", "auto-rgn"),
                                        ("llrd",)])
def test_flex_races_the_recipes(conv4, target, candidates):
    tuner = fit(conv4, target, strategy="flex", candidates=candidates)
    expected = ((set(tuner.units_) if "units" in candidates else set())
                | ({"all"} if "all" in candidates else set())
                | {c for c in candidates if c not in ("units", "all")})
    assert set(tuner.validation_scores_) >= expected
    assert tuner.selected_unit_ in tuner.validation_scores_
    restored = pickle.loads(pickle.dumps(tuner))
    np.testing.assert_array_equal(restored.predict(target["X_test"]),
                                  tuner.predict(target["X_test"]))


def test_unknown_candidates_are_refused(conv4, target):
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"'candidates' parameter .* 'lp-ft'"):
        fit(conv4, target, strategy="flex", candidates=("units", "lpft"))


def test_rgn_is_rgn_unit_with_a_warning(conv4, target):
    with pytest.warns(FutureWarning, match=r"strategy='rgn' is now 'rgn-unit'"):
        old = fit(conv4, target, strategy="rgn")
    new = fit(conv4, target, strategy="rgn-unit")
    assert old.selected_unit_ == new.selected_unit_
    assert old.proxy_scores_ == new.proxy_scores_


@pytest.mark.parametrize("strategy", ["auto-rgn", "lp-ft", "llrd"])
def test_recipes_work_with_a_new_head_cv_and_jobs(conv4, target, strategy):
    words = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    tuner = FlexTuner(conv4, strategy=strategy, head="new", cv=2, n_jobs=2, **FAST).fit(
        target["X"], words[target["y"]])
    assert tuner.selected_unit_ == strategy and tuner.head_ == "fc2"
    assert set(tuner.predict(target["X_test"])) <= set(words)
