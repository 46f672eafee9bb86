"""FlexTuner: strategies end to end, semantics, sklearn integration and bad input."""

import copy
import pickle
from collections import OrderedDict

import joblib
import numpy as np
import pytest
import torch
from conftest import Scripted, state_hash
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner
from flexsk.strategies import Outcome

FAST = dict(max_epochs=8, patience=3, random_state=0, refit=False)  # the selection run
BASELINES = ["ft-all", "ft-fc", "ft-ss"]
SELECTORS = ["flex", "fast", "faster"]


def fit(net, target, **params):
    params = {**FAST, **params}
    return FlexTuner(net, **params).fit(target["X"], target["y"], X_val=target["X_val"],
                                        y_val=target["y_val"])


def differing_keys(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return {k for k in sa if not torch.equal(sa[k], sb[k])}


# -- every strategy, end to end ----------------------------------------------------------


@pytest.mark.parametrize("strategy", SELECTORS + BASELINES)
def test_strategy_fits_and_reports(conv4, target, strategy):
    tuner = fit(conv4, target, strategy=strategy)
    assert tuner.units_ == ["conv1", "conv2", "fc1", "fc2"]
    keys = set(tuner.validation_scores_)
    assert keys == set(tuner.n_epochs_)
    assert tuner.selected_unit_ in keys
    if strategy in SELECTORS:
        assert list(tuner.proxy_scores_) == tuner.units_
    else:
        assert tuner.proxy_scores_ == {}
    expected_keys = {"flex": set(tuner.units_) | {"all"}, "ft-all": {"all"},
                     "ft-fc": {"fc2"}, "ft-ss": {"ss"}}
    if strategy in expected_keys:
        assert keys == expected_keys[strategy]
    if strategy == "faster":
        assert keys == {tuner.selected_unit_} and tuner.selected_unit_ in tuner.units_
    if strategy == "fast":
        assert "all" in keys and len(keys) == 2
    assert all(1 <= n <= FAST["max_epochs"] for n in tuner.n_epochs_.values())
    assert tuner.fit_time_ > 0
    proba = tuner.predict_proba(target["X_test"])
    assert proba.shape == (len(target["X_test"]), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert set(tuner.predict(target["X_test"])) <= set(tuner.classes_)
    assert 0 <= tuner.score(target["X_test"], target["y_test"]) <= 1


def test_validation_score_is_the_returned_models_accuracy_on_x_val(conv4, target):
    tuner = fit(conv4, target, strategy="flex")
    accuracy = np.mean(tuner.predict(target["X_val"]) == target["y_val"])
    assert accuracy == pytest.approx(tuner.validation_scores_[tuner.selected_unit_])
    assert tuner.validation_scores_[tuner.selected_unit_] == max(tuner.validation_scores_.values())


def test_flex_proxy_scores_are_the_candidates_validation_scores(conv4, target):
    tuner = fit(conv4, target, strategy="flex")
    for unit in tuner.units_:
        assert tuner.proxy_scores_[unit] == tuner.validation_scores_[unit]


def test_tuning_improves_on_the_pretrained_net(conv4, target):
    pretrained_accuracy = np.mean(
        conv4.predict(target["X_test"]) == target["y_test"])
    # the estimator's defaults (0.3: 0.650 against 0.574)
    tuner = fit(conv4, target, strategy="flex", max_epochs="auto", patience="auto", refit=True)
    assert tuner.score(target["X_test"], target["y_test"]) > pretrained_accuracy + 0.05


def test_keep_candidates(conv4, target):
    tuner = fit(conv4, target, strategy="flex", keep_candidates=True)
    assert set(tuner.candidates_) == set(tuner.validation_scores_)
    scores = tuner.score_candidates(target["X_val"], target["y_val"])
    for key, score in scores.items():
        assert score == pytest.approx(tuner.validation_scores_[key])
    # without keep_candidates, only the selection run's pick
    assert list(fit(conv4, target, strategy="ft-all").candidates_) == ["all"]


# -- training semantics ----------------------------------------------------------------------


def test_single_unit_changes_only_that_unit_and_keeps_bn_buffers(conv7, target):
    tuner = fit(conv7, target, strategy="ft-fc", n_fc_units=1, max_epochs=3, patience=None)
    changed = differing_keys(conv7.module_, tuner.net_.module_)
    assert changed and all(key.startswith("fc2.") for key in changed)


def test_tuning_a_bn_unit_moves_only_its_own_statistics(conv7, target):
    # every epoch "improves" (a rising scripted score), so each candidate keeps its trained
    # weights whatever the training luck: the test is about which statistics move, not
    # about accuracy
    scripted = Scripted(np.linspace(0.1, 0.9, 100).tolist())
    tuner = fit(scripted.net(conv7), target, strategy="flex", max_epochs=2, patience=None,
                keep_candidates=True, scoring=scripted.score)
    assert tuner.best_epochs_ == dict.fromkeys(tuner.best_epochs_, 2)
    conv2 = tuner.candidates_["conv2"]
    changed = differing_keys(conv7.module_, conv2)
    assert any("running_mean" in key for key in changed)
    assert all(key.startswith("conv2.") for key in changed)
    # ft-all trains every unit, BN statistics included
    changed_all = differing_keys(conv7.module_, tuner.candidates_["all"])
    assert any(k.startswith("conv1.") and "running_var" in k for k in changed_all)


def test_ft_all_tunes_parameters_outside_the_listed_units(conv4, target):
    tuner = fit(conv4, target, strategy="ft-all", units=["fc2"], max_epochs=2, patience=None)
    changed = differing_keys(conv4.module_, tuner.net_.module_)
    assert any(key.startswith("conv1.") for key in changed)


def test_ft_fc_two_units(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", n_fc_units=2, max_epochs=2, patience=None)
    assert tuner.selected_unit_ == ("fc1", "fc2")
    changed = differing_keys(conv4.module_, tuner.net_.module_)
    assert {key.split(".")[0] for key in changed} == {"fc1", "fc2"}


def test_ft_ss_folds_scales_into_the_original_architecture(conv7, target):
    tuner = fit(conv7, target, strategy="ft-ss", max_epochs=3, patience=None)
    before, after = conv7.module_.state_dict(), tuner.net_.module_.state_dict()
    assert before.keys() == after.keys()  # no parametrization left behind
    assert type(tuner.net_.module_.conv2[0]) is nn.Conv2d
    # a conv kernel is rescaled by one factor per (out, in) pair
    w0, w1 = before["conv2.0.weight"], after["conv2.0.weight"]
    ratio = w1 / w0
    spread = (ratio - ratio.mean(dim=(2, 3), keepdim=True)).abs().max()
    assert spread < 1e-4 and not torch.allclose(w0, w1)
    # linear layers: one scale per output feature
    l0, l1 = before["fc1.0.weight"], after["fc1.0.weight"]
    row_ratio = l1 / l0
    assert (row_ratio - row_ratio[:, :1]).abs().max() < 1e-4
    assert not torch.equal(before["conv2.0.bias"], after["conv2.0.bias"])  # shifted
    for key in before:  # BatchNorm stays frozen: affine and statistics
        if ".1." in key and key.startswith("conv"):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["fc2.weight"], after["fc2.weight"])  # last unit trained


@pytest.mark.parametrize("scores, patience, best_epoch, n_epochs", [
    ([0.5, 0.6, 0.7, 0.7, 0.65, 0.6, 0.9], 3, 2, 5),   # first best restored, strict >
    ([0.5, 0.4, 0.4, 0.4, 0.9], 3, 0, 3),             # epoch 0 counts as a candidate
    ([0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], None, 1, 6),  # patience off: all epochs
])
def test_early_stopping_rules(conv4, target, scores, patience, best_epoch, n_epochs):
    # scripted validation scores (the loss constant): what ranks epochs
    scripted = Scripted(scores)
    tuner = fit(scripted.net(conv4), target, strategy="ft-fc", max_epochs=6, patience=patience,
                scoring=scripted.score, on_epoch=scripted.keep_weights)
    assert tuner.n_epochs_["fc2"] == n_epochs
    assert tuner.best_epochs_["fc2"] == best_epoch
    assert tuner.validation_scores_["fc2"] == scores[best_epoch]
    restored = tuner.net_.module_.state_dict()
    kept = scripted.weights["fc2"][best_epoch]
    assert restored.keys() == kept.keys()
    for key, value in kept.items():
        assert torch.equal(restored[key], value), key


def test_proxy_swaps_buffers_with_parameters(conv7, target):
    from flexsk import _surgery
    from flexsk._units import resolve_units

    donor = copy.deepcopy(conv7.module_)
    with torch.no_grad():
        donor.conv2[1].running_mean.add_(1.0)
        donor.conv2[0].weight.mul_(2.0)
        donor.conv3[0].weight.mul_(2.0)
    unit = resolve_units(conv7.module_, ["conv2"], torch.as_tensor(target["X"][:2]))[0]
    proxy = _surgery.swap_unit(conv7.module_, donor, unit)
    assert differing_keys(conv7.module_, proxy) == {"conv2.0.weight", "conv2.1.running_mean"}
    assert torch.equal(proxy.conv2[1].running_mean, donor.conv2[1].running_mean)


# -- labels -------------------------------------------------------------------------------------


def test_subset_of_classes(conv4, target):
    keep = np.isin(target["y"], [2, 5, 7])
    keep_val = np.isin(target["y_val"], [2, 5, 7])
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(
        target["X"][keep], target["y"][keep], X_val=target["X_val"][keep_val],
        y_val=target["y_val"][keep_val])
    np.testing.assert_array_equal(tuner.classes_, [2, 5, 7])
    proba = tuner.predict_proba(target["X_test"])
    assert proba.shape == (len(target["X_test"]), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    # the columns are the net's outputs gathered to classes_, renormalized
    logits = tuner.net_.module_(torch.as_tensor(target["X_test"][:5])).detach()
    expected = torch.softmax(logits[:, [2, 5, 7]], dim=1).numpy()
    np.testing.assert_allclose(proba[:5], expected, rtol=1e-5, atol=1e-6)
    assert set(tuner.predict(target["X_test"])) <= {2, 5, 7}


@pytest.mark.parametrize("labels, message", [
    (lambda y: y + 1, r"outside \[0, 10\)"),
    (lambda y: y - 1, r"outside \[0, 10\)"),
    (lambda y: y.astype(str), "integer labels"),
    (lambda y: y + 0.5, "Unknown label type"),
])
def test_bad_labels(conv4, target, labels, message):
    # head="keep": labels must name the pretrained outputs ("auto" gives these a new head)
    with pytest.raises(ValueError, match=message):
        FlexTuner(conv4, head="keep", **FAST).fit(target["X"], labels(target["y"]))


def test_y_val_with_unseen_class(conv4, target):
    keep = target["y"] != 3
    with pytest.raises(ValueError, match=r"y_val holds labels \[3\]"):
        FlexTuner(conv4, **FAST).fit(target["X"][keep], target["y"][keep],
                                     X_val=target["X_val"], y_val=target["y_val"])


def test_integral_float_labels_are_accepted(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", max_epochs=1)
    tuner_f = FlexTuner(conv4, strategy="ft-fc", **{**FAST, "max_epochs": 1}).fit(
        target["X"], target["y"].astype(float), X_val=target["X_val"], y_val=target["y_val"])
    np.testing.assert_array_equal(tuner.predict(target["X_test"]),
                                  tuner_f.predict(target["X_test"]))


# -- the user's net is never modified ---------------------------------------------------------


def test_base_net_untouched_by_fit_predict_clone_and_search(conv7, target):
    before = state_hash(conv7.module_)
    training_flags = [m.training for m in conv7.module_.modules()]
    grads = [p.requires_grad for p in conv7.module_.parameters()]
    tuner = fit(conv7, target, strategy="flex", max_epochs=2)
    tuner.predict(target["X_test"])
    tuner.transform(target["X_test"])
    clone(tuner).fit(target["X"], target["y"])
    GridSearchCV(FlexTuner(conv7, **{**FAST, "max_epochs": 1}),
                 {"strategy": ["fast", "ft-ss"]}, cv=2).fit(target["X"], target["y"])
    assert state_hash(conv7.module_) == before
    assert [m.training for m in conv7.module_.modules()] == training_flags
    assert [p.requires_grad for p in conv7.module_.parameters()] == grads


def test_base_net_untouched_when_fit_fails_halfway(conv7, target):
    before = state_hash(conv7.module_)
    runs = []

    def failing(record):
        # the third run fails in the middle of its training, its weights half-tuned
        if record.epoch == 0:
            runs.append(record.candidate)
        if len(runs) == 3 and record.epoch == 1:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        fit(conv7, target, strategy="flex", max_epochs=2, on_epoch=failing)
    assert runs == ["conv1", "conv2", "conv3"]
    assert state_hash(conv7.module_) == before


def test_module_instance_net_untouched(target):
    module = _tiny_image_net(lazy=False)
    before = state_hash(module)
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, lr=1e-3,
                              optimizer=torch.optim.Adam, batch_size=32)
    tuner = fit(net, target, strategy="fast", max_epochs=2)
    assert state_hash(module) == before
    assert not getattr(net, "initialized_", False)
    assert tuner.units_ == ["conv", "fc"]


# -- clone, grid search, pipeline, pickle -------------------------------------------------------


def test_clone_keeps_pretrained_weights_and_copies_the_net(conv4, target):
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST)
    cloned = clone(tuner)
    assert cloned.base_net is not conv4
    assert state_hash(cloned.base_net.module_) == state_hash(conv4.module_)
    a = tuner.fit(target["X"], target["y"]).predict_proba(target["X_test"])
    b = cloned.fit(target["X"], target["y"]).predict_proba(target["X_test"])
    np.testing.assert_array_equal(a, b)


def test_grid_search_over_strategies(conv4, target):
    search = GridSearchCV(FlexTuner(conv4, **FAST), {"strategy": ["fast", "faster", "ft-fc"]},
                          cv=2).fit(target["X"], target["y"])
    assert search.best_params_["strategy"] in {"fast", "faster", "ft-fc"}
    assert search.best_estimator_.selected_unit_ is not None
    # pretrained weights survived cloning: the ft-fc candidates start above chance
    assert np.all(search.cv_results_["mean_test_score"] > 0.4)


def test_grid_over_base_net_params_leaves_user_net_alone(conv4, target):
    lr_before = conv4.lr
    GridSearchCV(FlexTuner(conv4, strategy="ft-fc", **FAST),
                 {"base_net__lr": [1e-4, 1e-3]}, cv=2).fit(target["X"], target["y"])
    assert conv4.lr == lr_before


def test_cross_val_score(conv4, target):
    scores = cross_val_score(FlexTuner(conv4, strategy="ft-fc", **FAST), target["X"],
                             target["y"], cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.4)


def test_pipeline_with_preprocessing(conv4, target):
    pipe = make_pipeline(FunctionTransformer(lambda X: np.clip(X, 0, 1)),
                         FlexTuner(conv4, strategy="faster", **FAST))
    pipe.fit(target["X"], target["y"])
    assert pipe.score(target["X_test"], target["y_test"]) > 0.4
    assert pipe.predict(target["X_test"]).shape == (len(target["X_test"]),)


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_pickle_round_trip(conv7, target, tmp_path, dump):
    tuner = fit(conv7, target, strategy="fast", max_epochs=2, keep_candidates=True)
    if dump == "pickle":
        restored = pickle.loads(pickle.dumps(tuner))
    else:
        joblib.dump(tuner, tmp_path / "tuner.joblib")
        restored = joblib.load(tmp_path / "tuner.joblib")
    np.testing.assert_array_equal(tuner.predict_proba(target["X_test"]),
                                  restored.predict_proba(target["X_test"]))
    np.testing.assert_array_equal(tuner.transform(target["X_test"]),
                                  restored.transform(target["X_test"]))
    assert restored.selected_unit_ == tuner.selected_unit_


# -- determinism and validation split ------------------------------------------------------------


def test_same_random_state_same_result(conv7, target):
    runs = [FlexTuner(conv7, strategy="fast", **FAST).fit(target["X"], target["y"])
            for _ in range(2)]
    assert runs[0].selected_unit_ == runs[1].selected_unit_
    assert runs[0].proxy_scores_ == runs[1].proxy_scores_
    np.testing.assert_array_equal(runs[0].predict_proba(target["X_test"]),
                                  runs[1].predict_proba(target["X_test"]))


def test_fit_leaves_global_rng_alone(conv4, target):
    state = torch.get_rng_state()
    fit(conv4, target, strategy="ft-all", max_epochs=1)
    assert torch.equal(state, torch.get_rng_state())


def test_internal_split_is_stratified_and_seeded(conv4, target):
    seen = []

    def last_unit(ctx):
        """ft-fc's run, after keeping the data the fit's context trains and validates on."""
        seen.append(ctx.data)
        return Outcome("fc2", {"fc2": ctx.tune("fc2")})

    for seed in (0, 0, 1):
        FlexTuner(conv4, strategy=last_unit, max_epochs=1, validation_fraction=0.3,
                  random_state=seed, refit=False).fit(target["X"], target["y"])
    a, b, c = seen
    assert torch.equal(a.val.X, b.val.X) and not torch.equal(a.val.X, c.val.X)
    assert len(a.val) == 30 and len(a.train) == 70
    assert torch.equal(torch.bincount(a.val.y), torch.full((10,), 3))


def test_internal_split_needs_two_samples_per_class(conv4, target):
    X, y = target["X"], target["y"]
    keep = np.concatenate([np.flatnonzero(y != 4), np.flatnonzero(y == 4)[:1]])
    with pytest.raises(ValueError, match="at least 2 samples per class; class 4 has 1"):
        FlexTuner(conv4, **FAST).fit(X[keep], y[keep])


# -- transform ----------------------------------------------------------------------------------


def test_transform_returns_input_of_last_unit(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc")
    embedding = tuner.transform(target["X_test"])
    module = tuner.net_.module_
    with torch.no_grad():
        x = torch.as_tensor(target["X_test"])
        expected = module.fc1(module.flatten(module.conv2(module.conv1(x))))
    np.testing.assert_allclose(embedding, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert embedding.dtype == np.float32


def test_pretrained_transform_embeds_with_the_pretrained_net(conv4, target):
    tuner = fit(conv4, target, strategy="ft-all")
    X = target["X_test"][:6]
    m = conv4.module_
    with torch.no_grad():
        expected = m.fc1(m.flatten(m.conv2(m.conv1(torch.as_tensor(X)))))
    np.testing.assert_allclose(tuner.pretrained_transform(X), expected.numpy(), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(tuner.transform(X), expected.numpy())  # ft-all moved it


def test_embedding_unit_chooses_the_cut(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", embedding_unit="conv2")
    embedding = tuner.transform(target["X_test"][:4])
    with torch.no_grad():
        expected = tuner.net_.module_.conv1(torch.as_tensor(target["X_test"][:4])).flatten(1)
    np.testing.assert_allclose(embedding, expected.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="embedding_unit='nope' is not a unit"):
        fit(conv4, target, strategy="ft-fc", embedding_unit="nope")


# -- bad input ---------------------------------------------------------------------------------


def test_inputs_as_tensor_noncontiguous_and_int(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", max_epochs=1)
    X = target["X_test"]
    expected = tuner.predict_proba(X)
    np.testing.assert_allclose(tuner.predict_proba(torch.as_tensor(X)), expected)
    transposed = np.ascontiguousarray(X.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not transposed.flags.c_contiguous
    np.testing.assert_allclose(tuner.predict_proba(transposed), expected)
    np.testing.assert_allclose(tuner.predict_proba(X.astype(np.float64)), expected)
    assert tuner.predict_proba((X * 10).astype(np.int64)).shape == expected.shape


def test_tensor_inputs_are_validated_where_they_live(conv4, target):
    X = torch.as_tensor(target["X"])
    tuner = FlexTuner(conv4, strategy="ft-fc", **{**FAST, "max_epochs": 1}).fit(
        X, target["y"], X_val=torch.as_tensor(target["X_val"]), y_val=target["y_val"])
    reference = fit(conv4, target, strategy="ft-fc", max_epochs=1)
    np.testing.assert_array_equal(tuner.predict_proba(target["X_test"]),
                                  reference.predict_proba(target["X_test"]))
    bad = X.clone()
    bad[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        FlexTuner(conv4, **FAST).fit(bad, target["y"])
    with pytest.raises(ValueError, match="0 sample"):
        tuner.predict(X[:0])
    with pytest.raises(ValueError, match=r"\(n_samples, 1, 8, 8\)"):
        tuner.predict(X[:, :, :4])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FlexTuner(conv4, **FAST).fit(X, target["y"][:-1])
    with pytest.raises(ValueError, match="real numbers"):
        tuner.predict(X.to(torch.complex64))


@pytest.mark.parametrize("corrupt, message", [
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), "NaN"),
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), "infinity"),
    (lambda X: X[:0], "0 sample"),
    (lambda X: X[:, :, :, 0], r"fitted on inputs of shape \(n_samples, 1, 8, 8\)"),
])
def test_bad_x_at_fit_and_predict(conv4, target, corrupt, message):
    tuner = fit(conv4, target, strategy="ft-fc", max_epochs=1)
    X = corrupt(target["X_test"].astype(np.float64))
    with pytest.raises(ValueError, match=message):
        tuner.predict(X)
    if "fitted on" not in message:
        with pytest.raises(ValueError, match=message):
            FlexTuner(conv4, **FAST).fit(corrupt(target["X"].astype(np.float64)),
                                         target["y"][:len(corrupt(target["X"]))])


def test_wrong_channels_at_fit_name_expected_shape(conv4, target):
    X = np.repeat(target["X"], 3, axis=1)
    with pytest.raises(ValueError, match=r"expects 1 input channels.*\(n_samples, 1, H, W\)"):
        FlexTuner(conv4, **FAST).fit(X, target["y"])


def test_wrong_image_size_at_fit(conv4, target):
    X = np.zeros((len(target["y"]), 1, 12, 12), dtype=np.float32)
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(n_samples, 1, 12, 12\)"):
        FlexTuner(conv4, **FAST).fit(X, target["y"])


def test_wrong_image_size_at_predict(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", max_epochs=1)
    with pytest.raises(ValueError, match=r"\(n_samples, 1, 8, 8\)"):
        tuner.predict(np.zeros((3, 1, 16, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(n_samples, 1, 8, 8\)"):
        tuner.predict(np.zeros((3, 3, 8, 8), dtype=np.float32))


def test_wrong_y_length(conv4, target):
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FlexTuner(conv4, **FAST).fit(target["X"], target["y"][:-1])
    with pytest.raises(ValueError, match="X_val has"):
        FlexTuner(conv4, **FAST).fit(target["X"], target["y"], X_val=target["X_val"],
                                     y_val=target["y_val"][:-1])
    with pytest.raises(ValueError, match="both X_val and y_val"):
        FlexTuner(conv4, **FAST).fit(target["X"], target["y"], X_val=target["X_val"])


def test_not_fitted(conv4, target):
    tuner = FlexTuner(conv4)
    for method in (tuner.predict, tuner.predict_proba, tuner.transform):
        with pytest.raises(NotFittedError):
            method(target["X_test"])


@pytest.mark.parametrize("params", [
    dict(strategy="best"), dict(max_epochs=0), dict(patience=0), dict(lr=-1.0),
    dict(validation_fraction=1.0), dict(n_fc_units=0), dict(units="first"),
    dict(batch_size=0), dict(keep_candidates="yes"),
])
def test_bad_parameters(conv4, target, params):
    with pytest.raises(InvalidParameterError):
        FlexTuner(conv4, **params).fit(target["X"], target["y"])


def test_base_net_must_be_a_classifier_with_weights(target):
    with pytest.raises(InvalidParameterError, match="NeuralNetClassifier"):
        FlexTuner(_tiny_image_net()).fit(target["X"], target["y"])
    uninitialized = NeuralNetClassifier(_TinyImageNet)
    with pytest.raises(ValueError, match="holds no pretrained weights"):
        FlexTuner(uninitialized).fit(target["X"], target["y"])


def test_n_fc_units_larger_than_units(conv4, target):
    with pytest.raises(ValueError, match="n_fc_units=5 exceeds the 4 units"):
        fit(conv4, target, strategy="ft-fc", n_fc_units=5)


# -- other nets ----------------------------------------------------------------------------------


class _TinyImageNet(nn.Module):
    def __init__(self, lazy=True):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.LazyLinear(10) if lazy else nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _tiny_image_net(lazy=True):
    torch.manual_seed(1)
    return _TinyImageNet(lazy)


def test_lazy_module_instance_is_materialized_on_a_copy(target):
    module = _tiny_image_net()
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, lr=1e-3,
                              optimizer=torch.optim.Adam)
    tuner = fit(net, target, strategy="ft-fc", max_epochs=2)
    assert isinstance(module.fc.weight, nn.parameter.UninitializedParameter)
    assert tuner.net_.module_.fc.weight.shape == (10, 4 * 8 * 8)


def test_nll_loss_net_with_probability_outputs(target):
    torch.manual_seed(0)
    module = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(64, 32),
                                       relu=nn.ReLU(), fc2=nn.Linear(32, 10),
                                       softmax=nn.Softmax(dim=-1)))
    net = NeuralNetClassifier(module, lr=1e-2, optimizer=torch.optim.Adam, batch_size=16)
    tuner = fit(net, target, strategy="flex", max_epochs=5)
    proba = tuner.predict_proba(target["X_test"])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert tuner.score(target["X_test"], target["y_test"]) > 0.3


@pytest.mark.parametrize("size", [12, 16, 7])
def test_wrong_image_size_names_the_size_the_net_takes(conv4, target, size):
    # the channel count is right: the message must not blame the channels
    X = np.zeros((len(target["y"]), 1, size, size), dtype=np.float32)
    with pytest.raises(ValueError, match=r"channel count matches.*\(n_samples, 1, 8, 8\)"):
        FlexTuner(conv4, **FAST).fit(X, target["y"])


def test_failed_refit_leaves_the_previous_fit_intact(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", max_epochs=1)
    before = {key: copy.copy(value) for key, value in vars(tuner).items()}
    proba = tuner.predict_proba(target["X_test"])
    subset = target["y"] < 3  # y_val then holds classes that y lacks: fit fails late
    with pytest.raises(ValueError, match="not in y"):
        tuner.fit(target["X"][subset], target["y"][subset], X_val=target["X_val"],
                  y_val=target["y_val"])
    assert vars(tuner).keys() == before.keys()
    np.testing.assert_array_equal(tuner.classes_, before["classes_"])
    np.testing.assert_array_equal(tuner.predict_proba(target["X_test"]), proba)
    with pytest.raises(ValueError, match="cannot take inputs"):
        tuner.fit(np.zeros((20, 1, 16, 16), np.float32), np.arange(20) % 10)
    np.testing.assert_array_equal(tuner.predict_proba(target["X_test"]), proba)


def test_failed_first_fit_leaves_the_estimator_unfitted(conv4, target):
    tuner = FlexTuner(conv4, **FAST)
    with pytest.raises(ValueError, match="not in y"):
        subset = target["y"] < 3
        tuner.fit(target["X"][subset], target["y"][subset], X_val=target["X_val"],
                  y_val=target["y_val"])
    with pytest.raises(NotFittedError):
        tuner.predict(target["X_test"])


def test_nan_in_x_val_names_x_val(conv4, target):
    X_val = target["X_val"].copy()
    X_val[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X_val contains NaN"):
        FlexTuner(conv4, **FAST).fit(target["X"], target["y"], X_val=X_val,
                                     y_val=target["y_val"])


def test_score_candidates_checks_lengths(conv4, target):
    tuner = fit(conv4, target, strategy="flex", max_epochs=1, keep_candidates=True)
    with pytest.raises(ValueError, match="X has 340 samples but y has 339"):
        tuner.score_candidates(target["X_test"], target["y_test"][:-1])


def test_feature_names_and_set_output(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", max_epochs=1)
    embedding = tuner.transform(target["X_test"][:5])
    names = tuner.get_feature_names_out()
    assert names.tolist() == [f"flextuner{i}" for i in range(embedding.shape[1])]
    pipe = make_pipeline(FunctionTransformer(), FlexTuner(conv4, strategy="ft-fc",
                                                          max_epochs=1, random_state=0))
    pipe.set_output(transform="default").fit(target["X"], target["y"])
    assert pipe.transform(target["X_test"][:5]).shape == embedding.shape
    with pytest.raises(NotFittedError):
        FlexTuner(conv4).get_feature_names_out()


def test_net_whose_parameters_belong_to_the_root_module(target):
    X = np.random.RandomState(0).randn(30, 5).astype(np.float32)
    y = np.arange(30) % 3
    net = NeuralNetClassifier(nn.Linear(5, 3), criterion=nn.CrossEntropyLoss)
    with pytest.raises(ValueError, match="belong to the root module"):
        FlexTuner(net, **FAST).fit(X, y)
    wrapped = NeuralNetClassifier(nn.Sequential(nn.Linear(5, 3)), criterion=nn.CrossEntropyLoss)
    assert FlexTuner(wrapped, **FAST).fit(X, y).units_ == ["0"]


@pytest.mark.parametrize("params", [dict(strategy="halving", max_epochs=2),
                                    dict(strategy="flex", max_units=3, max_epochs=1)])
def test_progress_bar_ends_at_the_runs_trained(conv4, target, monkeypatch, params):
    import tqdm.auto

    bars = {}

    class Recording(tqdm.auto.tqdm):
        def close(self):
            bars.setdefault(id(self), (self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    steps = []  # optimizer steps of every run: epoch 0 starts one

    def count(record):
        if record.epoch == 0:
            steps.append(0)
        steps[-1] = record.n_steps

    fit(conv4, target, verbose=1, on_epoch=count, **params)
    (n, total), = bars.values()
    assert n == total  # the planned total is an upper bound; the bar ends full
    assert n == sum(steps)  # the bar counts every optimizer step of every run


def test_verbose_two_prints_every_epoch(conv4, target, capsys):
    fit(conv4, target, strategy="ft-fc", max_epochs=2, patience=None, verbose=2)
    out = capsys.readouterr().out
    assert out.count("[fc2] epoch") == 2


def test_a_short_repr_with_the_tuners_own_settings_first(conv4):
    text = repr(FlexTuner(conv4, strategy="flex"))
    assert len(text) <= 200 and text.startswith("FlexTuner(strategy='flex', base_net=")
    n_params = sum(p.numel() for p in conv4.module_.parameters())
    assert text.endswith(f"base_net=NeuralNetClassifier(Sequential, {n_params:,} parameters))")
    assert repr(FlexTuner(conv4, lr=0.01, max_epochs=3)).startswith(
        "FlexTuner(lr=0.01, max_epochs=3, base_net=")
    with pytest.raises(ValueError) as caught:
        FlexTuner(conv4, strategy="fastest").fit(np.zeros((4, 1, 8, 8)), [0, 1, 0, 1])
    assert "_params_to_validate" not in str(caught.value) and len(str(caught.value)) < 300


def _weight_bytes(module):
    return sum(t.numel() * t.element_size() for t in list(module.parameters())
               + list(module.buffers()))


@pytest.mark.parametrize("strategy, refit", [("ft-fc", True), ("flex", False), ("flex", True)])
def test_a_fitted_tuner_pickles_each_set_of_weights_once(conv4, target, strategy, refit):
    import pickle

    tuner = fit(conv4, target, strategy=strategy, refit=refit)
    data = pickle.dumps(tuner)
    restored = pickle.loads(data)
    np.testing.assert_array_equal(restored.predict_proba(target["X_test"]),
                                  tuner.predict_proba(target["X_test"]))
    np.testing.assert_array_equal(restored.pretrained_transform(target["X_test"]),
                                  tuner.pretrained_transform(target["X_test"]))
    assert restored.score_candidates(target["X_test"], target["y_test"]) == \
        tuner.score_candidates(target["X_test"], target["y_test"])
    # stored once each: the base net's weights, and the tuned unit's (or every, for "all")
    # weights of the returned model and, after a refit, of the selection run's pick
    picked = tuner.selected_unit_
    names = picked if isinstance(picked, tuple) else (picked,)
    pick_bytes = (_weight_bytes(conv4.module_) if picked == "all" else
                  sum(_weight_bytes(conv4.module_.get_submodule(n)) for n in names))
    bound = _weight_bytes(conv4.module_) + pick_bytes * (2 if refit else 1) + 64 * 2 ** 10
    assert len(data) <= bound
    # restored modules own their tensors: changing one leaves the others alone
    module = restored.net_.module_
    before = restored.base_net.module_.state_dict()
    with torch.no_grad():
        for param in module.parameters():
            param.add_(1.0)
    after = restored.base_net.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert restored._pretrained is not module
