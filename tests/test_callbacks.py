"""skorch's LRScheduler and GradientNormClipping in every run, and the on_epoch hook."""

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring, GradientNormClipping, LRScheduler
from torch import nn

from conftest import refitted

from flexsk import EpochRecord, FlexTuner

N_EPOCHS = 4


def _net(module, callbacks, batch_size):
    return NeuralNetClassifier(copy.deepcopy(module), criterion=nn.CrossEntropyLoss,
                               optimizer=torch.optim.Adam, lr=1e-2, batch_size=batch_size,
                               train_split=None, max_epochs=N_EPOCHS, callbacks=callbacks,
                               verbose=0).initialize()


class _LastWeights:
    """on_epoch: the weights of one run at its last epoch."""

    def __init__(self, candidate, epoch):
        self.candidate, self.epoch, self.state = candidate, epoch, None

    def __call__(self, record):
        if record.candidate == self.candidate and record.epoch == self.epoch and not record.refit:
            self.state = {k: v.detach().clone() for k, v in record.module.state_dict().items()}


@pytest.mark.parametrize("callbacks", [
    [("lr", LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.3))],
    [("lr", LRScheduler("CosineAnnealingLR", T_max=N_EPOCHS)),
     ("clip", GradientNormClipping(gradient_clip_value=0.05))],
    [("lr", LRScheduler(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.05, total_steps=N_EPOCHS,
                        step_every="batch"))],
])
def test_ft_all_with_skorch_callbacks_trains_as_skorch_does(conv4, target, callbacks):
    # One full batch an epoch, so that shuffling changes only the order of a sum.
    X, y = target["X"], target["y"]
    expected = _net(conv4.module_, callbacks, len(y))
    expected.partial_fit(X, y, epochs=N_EPOCHS)
    observed = _LastWeights("all", N_EPOCHS)
    FlexTuner(_net(conv4.module_, callbacks, len(y)), strategy="ft-all", max_epochs=N_EPOCHS,
              patience=None, refit=False, random_state=0, on_epoch=observed).fit(
        X, y, X_val=target["X_val"], y_val=target["y_val"])
    plain = _LastWeights("all", N_EPOCHS)
    FlexTuner(_net(conv4.module_, [], len(y)), strategy="ft-all", max_epochs=N_EPOCHS,
              patience=None, refit=False, random_state=0, on_epoch=plain).fit(
        X, y, X_val=target["X_val"], y_val=target["y_val"])
    trained = expected.module_.state_dict()
    for key, value in trained.items():
        # float32 sums in another order: equal to 1e-5
        torch.testing.assert_close(observed.state[key], value, rtol=1e-4, atol=1e-5)
    # without the callbacks the same run ends elsewhere: the comparison can fail
    assert any(not torch.allclose(plain.state[k], v, rtol=1e-4, atol=1e-5)
               for k, v in trained.items())


CREATED = []


class _CountedStepLR(torch.optim.lr_scheduler.StepLR):
    """StepLR that records the optimizer of every run it schedules."""

    def __init__(self, optimizer, **kwargs):
        CREATED.append(optimizer)
        super().__init__(optimizer, **kwargs)


def test_callbacks_apply_to_every_run_and_leave_the_base_net_alone(conv4, target):
    CREATED.clear()
    schedule = LRScheduler(_CountedStepLR, step_size=1, gamma=0.5)
    net = _net(conv4.module_, [("lr", schedule)], 32)
    before = copy.deepcopy(net.module_.state_dict())
    tuner = FlexTuner(net, strategy="fast", max_epochs=3, patience=None, random_state=0).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    # fast: ft-all, the picked unit, the refit
    assert tuner.refit_epochs_ >= 1 and len(CREATED) == 3
    n_params = [sum(p.numel() for group in o.param_groups for p in group["params"])
                for o in CREATED]
    assert n_params[0] == sum(p.numel() for p in conv4.module_.parameters())
    picked = getattr(conv4.module_, tuner.selected_unit_) if tuner.selected_unit_ != "all" \
        else conv4.module_
    assert n_params[1] == n_params[2] == sum(p.numel() for p in picked.parameters())
    assert all(o.param_groups[0]["lr"] < 1e-2 for o in CREATED)  # stepped
    for key, value in net.module_.state_dict().items():
        assert torch.equal(value, before[key])
    assert schedule.lr_scheduler_ is None  # the user's callback was copied, not started


def test_other_callbacks_are_named_in_a_warning(conv4, target):
    net = _net(conv4.module_, [("acc", EpochScoring("accuracy")),
                               ("lr", LRScheduler("StepLR", step_size=1))], 32)
    with pytest.warns(UserWarning, match=r"applies base_net's LRScheduler and "
                                         r"GradientNormClipping callbacks but not the others "
                                         r"\(acc\)"):
        FlexTuner(net, strategy="ft-fc", max_epochs=1, random_state=0).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch: still improving
        FlexTuner(_net(conv4.module_, [("lr", LRScheduler("StepLR", step_size=1))], 32),
                  strategy="ft-fc", max_epochs=1, random_state=0).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


def test_on_epoch_sees_every_run_and_epoch(conv4, target):
    records = []
    tuner = FlexTuner(conv4, strategy="flex", max_epochs=3, patience=None, random_state=0,
                      on_epoch=records.append).fit(target["X"], target["y"],
                                                   X_val=target["X_val"], y_val=target["y_val"])
    assert all(isinstance(r, EpochRecord) for r in records)
    selection = [r for r in records if not r.refit]
    assert [(r.candidate, r.epoch) for r in selection] == [
        (key, epoch) for key in tuner.units_ + ["all"] for epoch in range(4)]
    for r in selection:
        assert (r.train_loss is None) == (r.epoch == 0)
        assert 0 <= r.val_accuracy <= 1 and np.isfinite(r.val_loss)
        assert r.n_steps == r.epoch * 4  # 100 images, batches of 32
    for key in tuner.units_ + ["all"]:
        last = [r for r in selection if r.candidate == key][tuner.best_epochs_[key]]
        assert last.val_accuracy == tuner.validation_scores_[key]
    refit = [r for r in records if r.refit]
    # the refit trains for the pick's peak (and is returned unless it fails its check)
    assert [r.epoch for r in refit] == list(range(tuner.best_epochs_[tuner.selected_unit_] + 1))
    assert tuner.refit_epochs_ in (None, len(refit) - 1)
    assert all(r.candidate == tuner.selected_unit_ and r.val_accuracy is None for r in refit)


def test_on_epoch_records_the_learning_rate_of_every_group(conv4, target):
    net = _net(conv4.module_, [("step", LRScheduler("StepLR", step_size=1, gamma=0.5))], 32)
    records = []
    FlexTuner(net, strategy="ft-fc", max_epochs=3, patience=None, random_state=0,
              refit=False, on_epoch=records.append).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    # each epoch's own rate: the schedule steps after the epoch
    assert [r.lr for r in records] == [(1e-2,), (1e-2,), (5e-3,), (2.5e-3,)]
    records.clear()
    FlexTuner(conv4, strategy="llrd", layer_decay=0.5, max_epochs=1, random_state=0,
              refit=False, on_epoch=records.append).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    # lr 1e-3 (the zoo net's), halved for each unit below the last: one group per unit
    assert sorted(records[0].lr) == [1e-3 * 0.5 ** d for d in (3, 2, 1, 0)]


def test_a_plateau_schedule_on_a_validation_score_skips_the_refit(conv4, target):
    for monitor in ("valid_loss", lambda net: net.history[-1, "valid_loss"]):
        net = _net(conv4.module_, [("plateau", LRScheduler("ReduceLROnPlateau",
                                                           monitor=monitor, patience=0))], 32)
        refitted(lambda: FlexTuner(net, strategy="ft-fc", max_epochs=3, patience=None,
                                   random_state=0).fit(target["X"], target["y"],
                                                       X_val=target["X_val"],
                                                       y_val=target["y_val"]))
