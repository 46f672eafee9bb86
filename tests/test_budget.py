"""What a fit costs: the validation schedule, budgets that say when they cut a run short,
and the progress bar."""

import re
import warnings

import numpy as np
import pytest
from conftest import Scripted
from sklearn.exceptions import ConvergenceWarning

from flexsk import FlexTuner
from flexsk._training import Stopping


@pytest.mark.parametrize("n_train, n_val, batch_size, expected", [
    (20, 200, 32, (400, 40, 10)),   # 2 per class: one step an epoch, validate every 10
    (100, 200, 32, (100, 10, 2)),   # 10 per class: 4 steps an epoch
    (400, 200, 32, (100, 5, 1)),    # 40 per class: validate every epoch
    (240, 60, 32, (100, 5, 1)),
    (20, 2000, 32, (400, 40, 20)),  # at most half the patience
])
def test_auto_stopping_validates_about_as_often_as_training_pays_for(
        n_train, n_val, batch_size, expected):
    stopping = Stopping.auto(n_train=n_train, n_val=n_val, batch_size=batch_size)
    assert (stopping.max_epochs, stopping.patience, stopping.validate_every) == expected


def test_explicit_settings_are_kept_and_small_patience_validates_every_epoch():
    assert Stopping.auto(n_train=20, n_val=200, batch_size=32, max_epochs=7, patience=3,
                         validate_every=4) == Stopping(7, 3, validate_every=4)
    assert Stopping.auto(n_train=20, n_val=200, batch_size=32, patience=2).validate_every == 1
    # no early stopping: still validated at least ten times
    assert Stopping.auto(n_train=20, n_val=200, batch_size=32, max_epochs=50,
                         patience=None).validate_every == 5


class Validated:
    """on_epoch: which epochs of which run were validated."""

    def __init__(self):
        self.epochs = {}

    def __call__(self, record):
        if not record.refit:
            seen = self.epochs.setdefault(record.candidate, [[], []])
            seen[record.val_accuracy is None].append(record.epoch)


def two_per_class(target):
    keep = np.concatenate([np.flatnonzero(target["y"] == c)[:2] for c in range(10)])
    return target["X"][keep], target["y"][keep]


def test_a_run_validates_on_its_schedule_and_after_its_last_epoch(conv4, target):
    X, y = two_per_class(target)  # 20 images against 200 for validation
    seen = Validated()
    tuner = FlexTuner(conv4, strategy="ft-fc", max_epochs=25, patience=None, validate_every=10,
                      random_state=0, refit=False, on_epoch=seen)
    tuner.fit(X, y, X_val=target["X_val"], y_val=target["y_val"])
    validated, skipped = seen.epochs["fc2"]
    assert validated == [0, 10, 20, 25]
    assert skipped == [e for e in range(1, 26) if e not in validated]
    assert tuner.best_epochs_["fc2"] in validated


def test_patience_is_counted_in_epochs_at_validated_epochs(conv4, target):
    # one improvement at the first validation (epoch 4), then nothing: patience 8 runs out
    # at the first validated epoch 8 or more epochs later
    scripted = Scripted([(0.1, 1.0), (0.5, 1.0)])
    X, y = two_per_class(target)
    tuner = FlexTuner(scripted.net(conv4), strategy="ft-fc", max_epochs=100, patience=8,
                      validate_every=4, random_state=0, refit=False,
                      scoring=scripted.score).fit(X, y, X_val=target["X_val"],
                                                  y_val=target["y_val"])
    assert tuner.best_epochs_ == {"fc2": 4}
    assert tuner.n_epochs_ == {"fc2": 12}


def test_validate_every_is_checked(conv4):
    from sklearn.utils._param_validation import InvalidParameterError

    for bad in (0, -1, "sometimes", 1.5, True):
        with pytest.raises(InvalidParameterError, match="validate_every"):
            FlexTuner(conv4, validate_every=bad)._validate_params()


# -- budgets that say when they cut a run short ------------------------------------------------


def test_a_pick_still_improving_at_max_epochs_warns_and_is_recorded(conv4, target):
    # the loss falls at every validation: the run is still improving when max_epochs ends it
    scripted = Scripted([(0.5, 10.0 - 0.1 * i) for i in range(50)])
    with pytest.warns(ConvergenceWarning, match=r"'fc2' reached max_epochs \(6 epochs"):
        tuner = FlexTuner(scripted.net(conv4), strategy="ft-fc", max_epochs=6, patience=3,
                          random_state=0, refit=False, scoring=scripted.score).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    assert tuner.max_epochs_reached_ == {"fc2": True}


def test_a_run_that_stops_by_patience_is_not_reported(conv4, target):
    scripted = Scripted([(0.1, 1.0), (0.5, 1.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        tuner = FlexTuner(scripted.net(conv4), strategy="ft-fc", max_epochs=20, patience=3,
                          random_state=0, refit=False, scoring=scripted.score).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    assert tuner.max_epochs_reached_ == {"fc2": False}
    assert tuner.n_epochs_ == {"fc2": 4}


def test_a_run_whose_best_epoch_is_old_is_not_reported_at_the_cap(conv4, target):
    # the loss keeps falling a little (progress: the run goes on), the score (what ranks in
    # place of the accuracy) peaked long ago
    scripted = Scripted([(0.1, 1.0), (0.5, 1.0)] + [(0.4, 0.99 - 0.01 * i) for i in range(40)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        tuner = FlexTuner(scripted.net(conv4), strategy="ft-fc", max_epochs=12, patience=3,
                          random_state=0, validate_every=1, refit=False,
                          scoring=scripted.score).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    assert tuner.best_epochs_ == {"fc2": 1}
    assert tuner.n_epochs_ == {"fc2": 12}
    assert tuner.max_epochs_reached_ == {"fc2": False}


# -- progress ----------------------------------------------------------------------------------


def test_verbose_1_shows_a_bar_in_steps_that_names_each_run_and_the_refit(conv4, target,
                                                                          capsys):
    FlexTuner(conv4, strategy="fast", max_epochs=4, patience=2, random_state=0,
              verbose=1).fit(target["X"], target["y"], X_val=target["X_val"],
                             y_val=target["y_val"])
    err = capsys.readouterr().err
    assert "FlexTuner(fast)" in err and "step" in err
    assert "all (1/2)" in err  # fast's first run, named while it trains
    assert re.search(r"refit \w+", err)
    final = err.rstrip().split("\r")[-1]
    done, total = map(int, re.search(r"(\d+)/(\d+) \[", final).groups())
    assert done == total > 0  # ends full: unused budgets left the total


def test_verbose_0_prints_nothing(conv4, target, capsys):
    FlexTuner(conv4, strategy="ft-fc", max_epochs=3, patience=2, random_state=0).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
