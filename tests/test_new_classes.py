"""New classes: a new output layer (head="new") for labels the pretrained net never had."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier, OutputCodeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier
from torch import nn

from conftest import refitted

import flexsk
from flexsk import FlexTuner
from flexsk._head import find_head, start_head
from flexsk._training._data import Samples
from flexsk._units import Unit
from flexsk.strategies import BUILTIN, Outcome
from flexsk.zoo import load_source_net

FAST = dict(max_epochs=2, patience=1, random_state=0)
NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                  "nine"])


def parity(y):
    return np.where(np.asarray(y) % 2 == 0, "even", "odd")


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def words(target):
    """The target with three classes named by words, the others left out."""
    keep = np.isin(target["y"], [1, 3, 7])
    keep_val = np.isin(target["y_val"], [1, 3, 7])
    keep_test = np.isin(target["y_test"], [1, 3, 7])
    return dict(X=target["X"][keep], y=NAMES[target["y"][keep]],
                X_val=target["X_val"][keep_val], y_val=NAMES[target["y_val"][keep_val]],
                X_test=target["X_test"][keep_test], y_test=NAMES[target["y_test"][keep_test]])


# -- what "auto" decides -------------------------------------------------------------------


def test_auto_gives_string_labels_a_new_head(conv4, target):
    before = _weights(conv4.module_)
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], parity(target["y"]))
    assert tuner.head_ == "fc2"
    assert tuner.classes_.tolist() == ["even", "odd"]
    assert tuner.net_.module_.fc2.out_features == 2
    assert tuner.net_.classes == ["even", "odd"]
    assert set(tuner.predict(target["X_test"])) <= {"even", "odd"}
    assert tuner.predict_proba(target["X_test"]).shape == (len(target["X_test"]), 2)
    after = _weights(conv4.module_)  # the base net is untouched
    assert conv4.module_.fc2.out_features == 10
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_auto_keeps_the_head_for_output_indices(conv4, target):
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"])
    assert tuner.head_ is None
    assert tuner.net_.module_.fc2.out_features == 10


def test_auto_gives_integers_beyond_the_outputs_a_new_head(conv4, target):
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"] + 100)
    assert tuner.head_ == "fc2"
    assert tuner.classes_.tolist() == list(range(100, 110))
    assert set(tuner.predict(target["X_test"])) <= set(range(100, 110))


def test_keep_refuses_labels_the_net_never_had_and_says_what_to_do(conv4, target):
    with pytest.raises(ValueError, match="head='new'"):
        FlexTuner(conv4, head="keep", **FAST).fit(target["X"], parity(target["y"]))
    with pytest.raises(ValueError, match=r"outside \[0, 10\).*head='new'"):
        FlexTuner(conv4, head="keep", **FAST).fit(target["X"], target["y"] + 100)


def test_a_net_with_declared_names_refuses_an_undeclared_label_under_auto(conv4, target):
    named = copy.deepcopy(conv4).set_params(classes=NAMES.tolist())
    y = NAMES[target["y"]].astype(object)
    y[:2] = "seveb"  # a typo, not a new task
    with pytest.raises(ValueError, match="'seveb'.*do not declare.*head='new'"):
        FlexTuner(named, **FAST).fit(target["X"], y)
    tuner = FlexTuner(named, head="new", strategy="ft-fc", **FAST).fit(target["X"], y)
    assert "seveb" in tuner.classes_ and tuner.net_.module_.fc2.out_features == 11


def test_a_new_head_for_output_indices_when_asked(conv4, target):
    tuner = FlexTuner(conv4, head="new", strategy="ft-fc", **FAST)
    tuner.fit(target["X"], target["y"])
    assert tuner.head_ == "fc2" and tuner.classes_.tolist() == list(range(10))


def test_validation_labels_outside_y_are_named_against_ys_classes(conv4, words):
    y_val = words["y_val"].copy()
    y_val[0] = "nine"
    with pytest.raises(ValueError, match="'nine'.*not in y; the classes seen in y"):
        FlexTuner(conv4, **FAST).fit(words["X"], words["y"], X_val=words["X_val"],
                                     y_val=y_val)


# -- every strategy trains the new head ------------------------------------------------------


@pytest.mark.parametrize("strategy", sorted(BUILTIN))
def test_every_strategy_tunes_its_pick_and_the_head(conv4, words, strategy):
    tuner = FlexTuner(conv4, strategy=strategy, head="new", refit=False, **FAST)
    tuner.fit(words["X"], words["y"], X_val=words["X_val"], y_val=words["y_val"])
    assert tuner.head_ == "fc2" and tuner.classes_.tolist() == ["one", "seven", "three"]
    start, tuned = _weights(tuner._pretrained), _weights(tuner.net_.module_)
    selected = tuner.selected_unit_
    names = set(selected if isinstance(selected, tuple) else (selected,))
    changed = {k.split(".")[0] for k in start if not torch.equal(start[k], tuned[k])}
    results = tuner.selection_results_
    if results["units"][results["picked"]][0] == "all":  # ft-all, or a recipe
        return
    allowed = names | {"fc2"} | ({"conv1", "conv2", "fc1"} if selected == "ss" else set())
    assert changed <= allowed
    assert "fc2" in changed or tuner.best_epochs_[selected] == 0
    assert set(tuner.predict(words["X_test"])) <= set(tuner.classes_)


def test_a_candidate_is_its_unit_plus_the_head(conv4, words):
    seen = {}

    def spy(record):
        if record.epoch == 1 and not record.refit:
            seen[record.candidate] = _weights(record.module)

    tuner = FlexTuner(conv4, strategy="flex", head="new", on_epoch=spy, **FAST)
    tuner.fit(words["X"], words["y"], X_val=words["X_val"], y_val=words["y_val"])
    start = _weights(tuner._pretrained)
    for unit in ("conv1", "conv2", "fc1", "fc2"):
        changed = {k.split(".")[0] for k in start if not torch.equal(start[k], seen[unit][k])}
        assert changed == {unit, "fc2"}, unit


def test_proxies_take_the_donors_unit_and_head(conv4, words):
    checked = {}

    def schedule(ctx):
        donor = ctx.tune("all", stopping=ctx.stopping.replace(max_epochs=1, patience=None),
                         keep_best=False)
        proxies = ctx.proxy_evaluations(donor.module)
        for unit in ctx.units:
            proxy = copy.deepcopy(ctx.pretrained)
            state = _weights(donor.module)
            proxy.load_state_dict({k: state[k] if unit.owns(k) or ctx.head.owns(k) else v
                                   for k, v in _weights(ctx.pretrained).items()})
            manual = ctx.evaluate(proxy)
            checked[unit.name] = (proxies[unit.name], manual)
        return Outcome("all", {"all": donor}, proxies, donor="all")

    FlexTuner(conv4, strategy=schedule, head="new", refit=False, **FAST).fit(
        words["X"], words["y"], X_val=words["X_val"], y_val=words["y_val"])
    assert set(checked) == {"conv1", "conv2", "fc1", "fc2"}
    for got, manual in checked.values():
        assert got.accuracy == manual.accuracy
        assert got.loss == pytest.approx(manual.loss, rel=1e-5)


def test_a_new_head_with_explicit_units_that_leave_it_out(conv4, words):
    tuner = FlexTuner(conv4, units=["conv1", "conv2"], strategy="flex", head="new", **FAST)
    tuner.fit(words["X"], words["y"])
    assert tuner.units_ == ["conv1", "conv2"]
    tuned = _weights(tuner.net_.module_)
    assert tuned["fc2.weight"].shape == (3, 64)
    assert not torch.equal(tuned["fc2.weight"], _weights(tuner._pretrained)["fc2.weight"]) \
        or tuner.refit_epochs_ == 0


@pytest.mark.parametrize("settings", [dict(cv=3), dict(max_units=2), dict(n_jobs=2),
                                      dict(refit=False), dict(activation_cache=False)])
def test_a_new_head_under_cv_jobs_pairs_and_refit(conv4, words, settings):
    tuner = FlexTuner(conv4, strategy="flex", head="new", **{**FAST, **settings})
    tuner.fit(words["X"], words["y"])
    assert tuner.head_ == "fc2"
    assert set(tuner.predict(words["X_test"])) <= set(tuner.classes_)
    assert tuner.score(words["X_test"], words["y_test"]) > 0


@pytest.mark.parametrize("strategy", sorted(BUILTIN))
def test_string_labels_under_every_strategy_with_cv_jobs_pairs_pickle_clone(
        conv4, words, strategy):
    max_units = 2 if BUILTIN[strategy].single_unit else 1
    tuner = refitted(lambda: FlexTuner(conv4, strategy=strategy, cv=3, n_jobs=2,
                                       max_units=max_units, **FAST).fit(words["X"], words["y"]))
    assert tuner.head_ == "fc2"
    restored = pickle.loads(pickle.dumps(tuner))
    np.testing.assert_array_equal(restored.predict(words["X_test"]),
                                  tuner.predict(words["X_test"]))
    assert set(tuner.predict(words["X_test"])) <= {"one", "three", "seven"}
    fresh = clone(tuner).fit(words["X"], words["y"])
    np.testing.assert_array_equal(fresh.predict(words["X_test"]),
                                  tuner.predict(words["X_test"]))


def test_the_same_seed_gives_the_same_new_head_model(conv4, words):
    a = FlexTuner(conv4, strategy="fast", head="new", **FAST).fit(words["X"], words["y"])
    b = FlexTuner(conv4, strategy="fast", head="new", **FAST).fit(words["X"], words["y"])
    wa, wb = _weights(a.net_.module_), _weights(b.net_.module_)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# -- scikit-learn around it ----------------------------------------------------------------


def test_grid_search_pickle_and_clone_with_a_new_head(conv4, words, tmp_path):
    search = GridSearchCV(FlexTuner(conv4, head="new", **FAST),
                          {"strategy": ["fast", "ft-fc"]}, cv=2)
    search.fit(words["X"], words["y"])
    best = search.best_estimator_
    assert best.head_ == "fc2"
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict(words["X_test"]),
                                  best.predict(words["X_test"]))
    assert restored.net_.classes == best.classes_.tolist()
    fresh = clone(best)
    assert fresh.head == "new" and not hasattr(fresh, "head_")


@pytest.mark.parametrize("meta", [OneVsRestClassifier, OutputCodeClassifier])
def test_meta_estimators_that_reencode_y_get_a_binary_head_each(conv4, target, meta):
    # OutputCodeClassifier's random code (10 classes, 15 columns) has no constant column
    # at random_state=0: sklearn's constant predictor would refuse 4-d images.
    kwargs = {"random_state": 0} if meta is OutputCodeClassifier else {}
    model = meta(FlexTuner(conv4, strategy="ft-fc", head="new", **FAST), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(target["X"], target["y"])
    for estimator in model.estimators_:
        assert estimator.head_ == "fc2"
        assert estimator.net_.module_.fc2.out_features == 2
    assert set(model.predict(target["X_test"])) <= set(target["y"])


# -- finding and starting the head -------------------------------------------------------------


class _Tail(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(16, 10))
        self.norm = nn.LayerNorm(10)

    def forward(self, x):
        return self.norm(self.classifier(self.body(x)))


def _net(module):
    return NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, lr=1e-2,
                               batch_size=16, train_split=None).initialize()


def test_the_head_is_found_or_refused_with_a_way_out(words):
    probe = torch.zeros(2, 1, 8, 8)
    module = _Tail()
    with pytest.raises(ValueError, match=r"'norm' \(LayerNorm\).*'classifier.0'"):
        find_head(module, probe, 10)
    module.norm = nn.Identity()
    assert find_head(module, probe, 10) == "classifier.0"
    tuner = FlexTuner(_net(_Tail()), head="classifier.0", units=["body", "classifier"],
                      strategy="ft-fc", **FAST)
    with pytest.raises(ValueError, match="a layer after it depends on its 10 outputs"):
        tuner.fit(words["X"], words["y"])  # LayerNorm(10) after it


class _Rooted(nn.Module):
    """A parameter held by the root (as a ViT's position embedding) and a custom linear."""

    def __init__(self, head=nn.Linear):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(64))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.head = head(16, 10)

    def forward(self, x):
        return self.head(self.body(x) + self.pos[:16])


class _Cosine(nn.Linear):
    def forward(self, x):
        return nn.functional.linear(nn.functional.normalize(x, dim=1), self.weight)


def test_root_parameters_do_not_hide_the_head_and_subclasses_are_refused(words):
    assert find_head(_Rooted(), torch.zeros(2, 1, 8, 8), 10) == "head"
    with pytest.raises(ValueError, match="'head' .*_Cosine"):
        find_head(_Rooted(_Cosine), torch.zeros(2, 1, 8, 8), 10)
    with pytest.raises(ValueError, match="a subclass of nn.Linear"):
        FlexTuner(_net(_Rooted(_Cosine)), head="head", **FAST).fit(words["X"], words["y"])
    with pytest.raises(ValueError, match="single nn.Linear"):
        FlexTuner(_net(nn.Linear(64, 4)), **FAST).fit(words["X"].reshape(-1, 64), words["y"])


def test_boolean_labels_get_a_new_head_and_stay_booleans(conv4, target):
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"] > 4)
    assert tuner.head_ == "fc2" and tuner.classes_.tolist() == [False, True]
    assert tuner.predict(target["X_test"]).dtype == bool


def test_logits_under_nllloss_are_refused_before_training(words):
    net = NeuralNetClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                              criterion=nn.NLLLoss, lr=1e-2).initialize()
    with pytest.raises(ValueError, match="NLLLoss.*criterion=torch.nn.CrossEntropyLoss"):
        FlexTuner(net, **FAST).fit(words["X"], words["y"])


def test_too_few_samples_name_the_users_label(conv4, words):
    y = words["y"].astype(object)
    y[0] = "unique"
    with pytest.raises(ValueError, match="class 'unique' has 1 sample"):
        FlexTuner(conv4, **FAST).fit(words["X"], y)


@pytest.mark.parametrize("head, message", [("nohere", "is not a module"),
                                           ("conv1", "is a Sequential")])
def test_a_named_head_must_be_a_linear_layer(conv4, words, head, message):
    with pytest.raises(ValueError, match=message):
        FlexTuner(conv4, head=head, **FAST).fit(words["X"], words["y"])


def test_a_named_head_is_replaced(conv4, words):
    tuner = FlexTuner(conv4, head="fc2", strategy="ft-fc", **FAST)
    tuner.fit(words["X"], words["y"])
    assert tuner.head_ == "fc2"


def test_the_probe_start_is_a_logistic_regression_on_the_features():
    torch.manual_seed(0)
    features = torch.randn(60, 4)
    labels = (features[:, 0] > 0).long() + (features[:, 1] > 1).long()  # 3 classes
    module = nn.Sequential(nn.Identity(), nn.Linear(4, 3))
    before = _weights(module)
    started = start_head(module, Unit("1", ("1",)), Samples(features, labels), 16, "probe")
    assert all(torch.equal(before[k], v) for k, v in _weights(module).items())
    expected = make_pipeline(StandardScaler(), LogisticRegression())
    expected.fit(features.numpy(), labels.numpy())
    with torch.no_grad():
        got = torch.softmax(started(features), 1).numpy()
    np.testing.assert_allclose(got, expected.predict_proba(features.numpy()), atol=1e-4)
    binary = (features[:, 0] > 0).long()
    two = start_head(nn.Sequential(nn.Identity(), nn.Linear(4, 2)), Unit("1", ("1",)),
                     Samples(features, binary), 16, "probe")
    expected = make_pipeline(StandardScaler(), LogisticRegression())
    expected.fit(features.numpy(), binary.numpy())
    with torch.no_grad():
        got = torch.softmax(two(features), 1).numpy()
    np.testing.assert_allclose(got, expected.predict_proba(features.numpy()), atol=1e-4)
    torch.testing.assert_close(two[1].weight[0], -two[1].weight[1])


def test_the_new_head_starts_at_a_seeded_random_initialization(conv4, words):
    a = FlexTuner(conv4, strategy="ft-fc", head="new", **FAST).fit(words["X"], words["y"])
    b = FlexTuner(conv4, strategy="ft-fc", head="new", **FAST).fit(words["X"], words["y"])
    torch.testing.assert_close(a._pretrained.fc2.weight, b._pretrained.fc2.weight)
    assert a._pretrained.fc2.weight.abs().max() <= 1 / np.sqrt(64)  # nn.Linear's bound
    with flexsk.config_context(head_start="probe"):
        probe = FlexTuner(conv4, strategy="ft-fc", head="new", **FAST).fit(
            words["X"], words["y"])
    assert not torch.equal(a._pretrained.fc2.weight, probe._pretrained.fc2.weight)
    assert probe.head_ == "fc2"


# -- the zoo's sources for new classes ----------------------------------------------------------


def test_a_zoo_net_pretrained_on_some_digits(cache_dir, target):
    net = load_source_net("conv4", image_size=8, cache_dir=cache_dir, digits=[0, 1, 2])
    assert net.module_.fc2.out_features == 3 and list(net.classes) == [0, 1, 2]
    keep = target["y"] > 2
    tuner = FlexTuner(net, strategy="ft-fc", **FAST).fit(target["X"][keep], target["y"][keep])
    assert tuner.head_ == "fc2" and tuner.classes_.tolist() == list(range(3, 10))
    with pytest.raises(ValueError, match="at least two distinct digits"):
        load_source_net("conv4", image_size=8, cache_dir=cache_dir, digits=[3])


def _bytes(module):
    return sum(t.numel() * t.element_size() for t in list(module.parameters())
               + list(module.buffers()))


@pytest.mark.parametrize("refit", [True, False])
def test_a_new_head_pickles_lean(conv4, words, refit):
    tuner = FlexTuner(conv4, strategy="ft-fc", head="new", refit=refit, **FAST)
    tuner.fit(words["X"], words["y"])
    data = pickle.dumps(tuner)
    restored = pickle.loads(data)
    np.testing.assert_array_equal(restored.predict_proba(words["X_test"]),
                                  tuner.predict_proba(words["X_test"]))
    assert restored.head_ == "fc2" and restored.net_.classes == tuner.classes_.tolist()
    # the base net, the new head's start, and the tuned head (twice after a refit)
    head = _bytes(tuner.net_.module_.fc2)
    assert len(data) <= _bytes(conv4.module_) + head * (3 if refit else 2) + 64 * 2 ** 10


def test_a_new_head_behind_pixel_adapters(conv4, words):
    tuner = FlexTuner(conv4, strategy="flex", head="new", pixel_adapter="color", **FAST)
    tuner.fit(words["X"], words["y"])
    assert tuner.units_[0] == "adapter_color" and tuner.head_ == "fc2"
    assert tuner.net_.module_.net.fc2.out_features == 3
    assert set(tuner.predict(words["X_test"])) <= set(tuner.classes_)


def test_the_pretrained_fingerprint_leaves_the_new_head_out(conv4, words, target):
    a = FlexTuner(conv4, strategy="ft-fc", head="new", **FAST).fit(words["X"], words["y"])
    b = FlexTuner(conv4, strategy="ft-fc", head="new", **FAST).fit(target["X"],
                                                                   parity(target["y"]))
    assert not torch.equal(a._pretrained.fc2.bias[:2], b._pretrained.fc2.bias)
    assert a.pretrained_fingerprint() == b.pretrained_fingerprint()
    np.testing.assert_array_equal(a.pretrained_transform(words["X_test"]),
                                  b.pretrained_transform(words["X_test"]))


@pytest.mark.parametrize("settings", [dict(cv=3), dict(refit=True), dict(refit=False)])
def test_the_probe_start_under_cv_and_refit(conv4, words, settings):
    tuner = FlexTuner(conv4, strategy="fast", head="new", **{**FAST, **settings})
    with flexsk.config_context(head_start="probe"):
        tuner.fit(words["X"], words["y"])
    assert set(tuner.predict(words["X_test"])) <= set(tuner.classes_)
    # the start is a logistic regression fitted on these images: above chance on them
    start = FlexTuner.__new__(FlexTuner)
    start.__dict__.update(tuner.__dict__, net_=tuner._net_holding(tuner._pretrained))
    assert start.score(words["X"], words["y"]) > 1 / 3


def test_the_head_alone_starts_as_a_logistic_regression_and_the_others_at_random(conv4,
                                                                                 words):
    starts = {}

    def spy(record):
        if record.epoch == 0 and not record.refit:
            starts[record.candidate] = copy.deepcopy(record.module)

    tuner = FlexTuner(conv4, strategy="flex", head="new", on_epoch=spy, **FAST)
    tuner.fit(words["X"], words["y"], X_val=words["X_val"], y_val=words["y_val"])
    expected = make_pipeline(StandardScaler(), LogisticRegression())
    expected.fit(tuner.pretrained_transform(words["X"]), words["y"])
    with torch.no_grad():
        got = torch.softmax(starts["fc2"](torch.as_tensor(words["X_test"])), 1).numpy()
    # the same problem up to the features' rounding (another batch, memory format or
    # thread count), solved by lbfgs to its tolerance (1e-4 on the gradient): the two
    # solutions agree to about 1e-3 in probability, not to the last bits
    want = expected.predict_proba(tuner.pretrained_transform(words["X_test"]))
    np.testing.assert_allclose(got, want, atol=5e-3)
    clear = np.sort(want, axis=1)[:, -1] - np.sort(want, axis=1)[:, -2] > 1e-2
    np.testing.assert_array_equal(got.argmax(1)[clear], want.argmax(1)[clear])
    for key in ("conv1", "conv2", "fc1", "all"):  # with other weights: the random start
        torch.testing.assert_close(starts[key].fc2.weight, tuner._pretrained.fc2.weight)


def test_a_linear_probe_that_training_cannot_better_is_kept_and_refit_on_all_data(conv4,
                                                                                  words):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuner = FlexTuner(conv4, strategy="ft-fc", head="new", lr=1e-12, **FAST)
        tuner.fit(words["X"], words["y"], X_val=words["X_val"], y_val=words["y_val"])
    assert tuner.best_epochs_["fc2"] == 0 and tuner.refit_epochs_ == 0
    assert not any("No candidate ranks above" in str(w.message) for w in caught)
    # the returned model is the probe of the training and validation images together
    expected = make_pipeline(StandardScaler(), LogisticRegression())
    expected.fit(tuner.pretrained_transform(np.concatenate([words["X"], words["X_val"]])),
                 np.concatenate([words["y"], words["y_val"]]))
    np.testing.assert_allclose(tuner.predict_proba(words["X_test"]), expected.predict_proba(
        tuner.pretrained_transform(words["X_test"])), atol=1e-4)


def test_an_unknown_unit_is_named_with_a_new_head(conv4, words):
    def schedule(ctx):
        return Outcome("nope", {"nope": ctx.tune("nope")})

    with pytest.raises(ValueError, match="'nope' is not a unit"):
        FlexTuner(conv4, strategy=schedule, head="new", **FAST).fit(words["X"], words["y"])
