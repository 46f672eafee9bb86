"""Nothing wrong, nothing silent: misuse and failures get a clear error or a warning."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from flexsk import FlexTuner, SelectionWarning
from flexsk.strategies import Outcome

FAST = dict(max_epochs=3, patience=2, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**FAST, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


# -- a refit is checked like a selection run --------------------------------------------------


class _WreckTheRefit:
    """on_epoch: ruins the refit's weights, as a far too large lr would."""

    def __call__(self, record):
        if record.refit and record.epoch > 0:
            with torch.no_grad():
                for param in record.module.parameters():
                    param.zero_()


def test_a_refit_worse_than_the_pick_on_its_own_data_is_never_returned(conv4, target):
    with pytest.warns(SelectionWarning, match=r"The refit of 'fc2' scores .* below the "
                                              r"selection run's model"):
        tuner = fit(conv4, target, strategy="ft-fc", keep_candidates=True,
                    on_epoch=_WreckTheRefit())
    assert tuner.refit_epochs_ is None
    np.testing.assert_array_equal(tuner.net_.module_(torch.as_tensor(target["X_test"])).detach(),
                                  tuner.candidates_["fc2"](torch.as_tensor(target["X_test"]))
                                  .detach())


def test_a_healthy_refit_is_returned(conv4, target):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelectionWarning)
        tuner = fit(conv4, target, strategy="ft-fc", max_epochs=6, patience=3)
    assert tuner.refit_epochs_ == tuner.best_epochs_["fc2"] > 0


# -- the output layer ---------------------------------------------------------------------------


def _backbone(conv4):
    """The usual way to make a backbone: the classifier replaced by nn.Identity."""
    net = copy.deepcopy(conv4)
    net.module_.fc2 = nn.Identity()
    return net


def test_a_net_ending_in_identity_is_refused_with_integer_labels(conv4, target):
    with pytest.raises(ValueError, match=r"outputs come out of 'fc2', an nn.Identity: its 64 "
                                         r"outputs are the features before it.*pass "
                                         r"head='new'"):
        fit(_backbone(conv4), target, strategy="ft-fc")


def test_a_net_ending_in_identity_is_refused_with_new_classes(conv4, target):
    words = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    with pytest.raises(ValueError, match=r"an nn.Identity.*head='new' replaces it") as info:
        FlexTuner(_backbone(conv4), strategy="ft-fc", head="new", **FAST).fit(
            target["X"], words[target["y"]])
    assert "pass head='new'" not in str(info.value)  # never suggests what was passed


def test_a_new_head_must_give_the_nets_outputs(target):
    # the last layer with parameters is followed by a ReLU: it is not the output layer
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10),
                           nn.ReLU())
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss).initialize()
    with pytest.raises(ValueError, match=r"which is '3' \(Linear\), but the network's outputs "
                                         r"are not its outputs \('4' \(ReLU\) come after it\)"):
        FlexTuner(net, head="new", **FAST).fit(target["X"], target["y"] + 100)


def test_auto_says_when_it_replaces_the_pretrained_head_for_integer_labels(conv4, target):
    with pytest.warns(UserWarning, match=r"head='auto' replaced the pretrained output layer "
                                         r"'fc2' by a new one.*\(10 is not\).*y - 1"):
        tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"] + 1)
    assert tuner.head_ == "fc2"
    with warnings.catch_warnings():  # strings: a new head is the only reading, no warning
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"].astype(str))


def test_softmax_outputs_under_cross_entropy_are_refused(conv4, target):
    module = nn.Sequential(copy.deepcopy(conv4.module_), nn.Softmax(dim=1))
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss).initialize()
    with pytest.raises(ValueError, match=r"outputs probabilities .* criterion is "
                                         r"CrossEntropyLoss"):
        fit(net, target)


def test_integer_images_are_named_in_a_warning(conv4, target):
    X = (target["X"] * 255).astype(np.uint8)
    with pytest.warns(UserWarning, match=r"X holds integers \(uint8, up to 255\).* X / 255"):
        FlexTuner(conv4, strategy="ft-fc", **FAST).fit(X, target["y"])


# -- skorch settings, checked as skorch checks them ---------------------------------------


def _with_callbacks(conv4, callbacks):
    net = NeuralNetClassifier(copy.deepcopy(conv4.module_), criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=1e-3, callbacks=callbacks)
    return net.initialize()


def test_a_plateau_schedule_monitoring_what_no_run_records_is_refused(conv4, target):
    net = _with_callbacks(conv4, [("plateau", LRScheduler("ReduceLROnPlateau",
                                                          monitor="valid_los"))])
    with pytest.raises(ValueError, match=r"'plateau' \(ReduceLROnPlateau\) monitors "
                                         r"'valid_los'.*'valid_loss'"):
        fit(net, target)


def test_a_schedule_that_sets_a_non_finite_lr_is_named(conv4, target):
    net = _with_callbacks(conv4, [("step", LRScheduler("StepLR", step_size=1,
                                                       gamma=float("nan")))])
    with pytest.raises(ValueError, match="LRScheduler set a non-finite learning rate"):
        fit(net, target, strategy="ft-fc")


def test_set_params_takes_another_optimizer_class(conv4, target):
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST)
    tuner.set_params(base_net__optimizer=torch.optim.SGD, base_net__lr=0.05)
    assert conv4.optimizer is torch.optim.Adam  # the net passed in keeps its settings
    assert isinstance(tuner.base_net.optimizer_, torch.optim.SGD)
    tuner.fit(target["X"], target["y"])
    assert tuner.score(target["X_test"], target["y_test"]) > 0.1


# -- a user strategy's outcome is checked against its runs ----------------------------------


def test_an_outcome_filing_a_run_under_another_key_is_refused(conv4, target):
    def mislabel(ctx):
        return Outcome("fc2", {"fc2": ctx.tune("conv1")})

    with pytest.raises(ValueError, match=r"returned the run of 'conv1' under the key 'fc2'"):
        fit(conv4, target, strategy=mislabel)


@pytest.mark.parametrize("outcome, message", [
    (dict(selected=["fc2"], tuned={}), r"Outcome.selected must be a unit name.*got list"),
    (dict(selected="fc2", tuned={}, proxy_scores={"fc2": "high"}),
     r"proxy_scores values must be Evaluations or numbers"),
    (dict(selected="fc2", tuned={}, proxy_scores={"fc2": True}),
     r"proxy_scores values must be Evaluations or numbers"),
])
def test_malformed_outcomes_get_typed_errors(outcome, message):
    with pytest.raises(TypeError, match=message):
        Outcome(**outcome)


# -- counts are counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["max_epochs", "patience", "validate_every", "batch_size",
                                  "n_fc_units", "max_units", "halving_min_epochs", "n_jobs",
                                  "activation_cache_bytes"])
def test_booleans_are_refused_where_a_count_is_expected(conv4, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        FlexTuner(conv4, **{name: True})._validate_params()


# -- pickles -------------------------------------------------------------------------------------


def _weight_bytes(module):
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def test_a_tuner_pickles_without_the_base_nets_optimizer(conv4, target):
    # a base net trained as users train them carries Adam's state, twice the weights
    net = copy.deepcopy(conv4)
    net.partial_fit(target["X_val"], target["y_val"])
    assert net.optimizer_.state
    tuner = fit(net, target, strategy="ft-fc")
    data = pickle.dumps(tuner)
    weights = _weight_bytes(net.module_)
    head = _weight_bytes(net.module_.fc2)
    assert len(data) <= weights + 2 * head + 64 * 2 ** 10
    restored = pickle.loads(data)
    assert net.optimizer_.state  # the net passed in is untouched
    assert isinstance(restored.base_net.optimizer_, torch.optim.Adam)
    assert not restored.base_net.optimizer_.state
    np.testing.assert_array_equal(restored.predict_proba(target["X_test"]),
                                  tuner.predict_proba(target["X_test"]))
