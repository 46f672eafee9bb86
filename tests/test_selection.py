"""Selection you can trust: ranking by accuracy then loss, refit, warnings, cv, patience."""

import copy
import dataclasses
import inspect
import re
import warnings

import numpy as np
import pytest
import torch
from conftest import Scripted, refitted, state_hash
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner, SelectionWarning
from flexsk.strategies import Evaluation, Outcome

FAST = dict(max_epochs=6, patience=3, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**FAST, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


def differing_keys(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return {k for k in sa if not torch.equal(sa[k], sb[k])}


# -- early stopping: accuracy, then loss -------------------------------------------------------


@pytest.mark.parametrize("evaluations, patience, best_epoch, n_epochs", [
    # equal accuracy, loss down by more than 1e-4 relative: an improvement
    ([(0.5, 1.0), (0.6, 0.9), (0.6, 0.8), (0.6, 0.85), (0.6, 0.85), (0.6, 0.85)], 2, 2, 4),
    # a fall of under 1e-4 relative is not one
    ([(0.5, 1.0), (0.6, 0.9), (0.6, 0.89995), (0.6, 0.89992), (0.6, 0.8999)], 2, 1, 3),
    # an improvement by loss resets patience
    ([(0.5, 1.0), (0.6, 0.9), (0.6, 0.9), (0.6, 0.8), (0.6, 0.8), (0.6, 0.8), (0.6, 0.8)],
     2, 3, 5),
    # accuracy first: a higher accuracy wins whatever its loss; the new loss minimum at
    # epoch 3 is progress, so patience counts from there
    ([(0.5, 1.0), (0.6, 0.5), (0.7, 3.0), (0.65, 0.1), (0.65, 0.1)], 2, 2, 5),
    # a confidently wrong start: accuracy dips while the loss falls; the run goes on and
    # keeps the epoch where accuracy finally rises
    ([(0.5, 25.0), (0.3, 20.0), (0.2, 15.0), (0.2, 10.0), (0.4, 5.0), (0.6, 2.0),
      (0.6, 2.0)], 2, 5, 7),
    # a new loss minimum alone resets patience, but the kept epoch is the best by accuracy
    ([(0.5, 1.0), (0.6, 0.9), (0.55, 0.8), (0.55, 0.7), (0.55, 0.7), (0.55, 0.7)], 2, 1, 5),
    # patience=None: every epoch, the best restored
    ([(0.5, 1.0), (0.6, 0.9), (0.6, 0.7), (0.6, 0.8)], None, 2, 6),
])
def test_early_stopping_ranks_epochs_by_accuracy_then_loss(
        conv4, target, evaluations, patience, best_epoch, n_epochs):
    # the scripted scores rank as accuracies do (the ranking rule reads either)
    scripted = Scripted(evaluations)
    tuner = fit(scripted.net(conv4), target, strategy="ft-fc", patience=patience, refit=False,
                max_epochs=7 if len(evaluations) > 6 else 6, scoring=scripted.score,
                on_epoch=scripted.keep_weights)
    assert tuner.n_epochs_["fc2"] == n_epochs
    assert tuner.best_epochs_["fc2"] == best_epoch
    assert tuner.validation_scores_["fc2"] == evaluations[best_epoch][0]
    assert tuner.validation_losses_["fc2"] == pytest.approx(evaluations[best_epoch][1],
                                                            rel=1e-12)
    restored = tuner.net_.module_.state_dict()
    kept = scripted.weights["fc2"][best_epoch]
    assert restored.keys() == kept.keys()
    for key, value in kept.items():
        assert torch.equal(restored[key], value), key


def test_validation_losses_beside_scores(conv4, target):
    tuner = fit(conv4, target, strategy="flex")
    assert tuner.validation_losses_.keys() == tuner.validation_scores_.keys()
    assert all(np.isfinite(loss) and loss > 0 for loss in tuner.validation_losses_.values())
    assert tuner.proxy_losses_.keys() == tuner.proxy_scores_.keys()


def test_validation_loss_is_the_criterion_on_the_target_classes(conv4, target):
    tuner = fit(conv4, target, strategy="ft-fc", refit=False)
    module = tuner.candidates_["fc2"]
    with torch.no_grad():
        logits = module(torch.as_tensor(target["X_val"]))[:, tuner.classes_]
        expected = nn.functional.cross_entropy(
            logits, torch.as_tensor(np.searchsorted(tuner.classes_, target["y_val"])))
    assert tuner.validation_losses_["fc2"] == pytest.approx(expected.item(), rel=1e-5)


# -- refit ---------------------------------------------------------------------------------------


def test_refit_is_the_default_and_changes_the_model(conv4, target):
    assert FlexTuner(conv4).refit is True
    refitted = fit(conv4, target, strategy="flex")
    selection_run = fit(conv4, target, strategy="flex", refit=False)
    assert refitted.selected_unit_ == selection_run.selected_unit_  # the same selection run
    assert refitted.validation_scores_ == selection_run.validation_scores_
    pick = refitted.candidates_[refitted.selected_unit_]
    assert differing_keys(pick, refitted.net_.module_)  # retrained on more data
    assert not differing_keys(selection_run.candidates_[selection_run.selected_unit_],
                              selection_run.net_.module_)
    # the selection run's pick stays scoreable
    scores = refitted.score_candidates(target["X_val"], target["y_val"])
    assert scores[refitted.selected_unit_] == pytest.approx(
        refitted.validation_scores_[refitted.selected_unit_])
    assert refitted.refit_epochs_ >= 1 and selection_run.refit_epochs_ is None


@pytest.mark.parametrize("strategy", ["flex", "fast", "faster", "rgn-unit", "halving",
                                      "ft-all", "ft-fc", "ft-ss", "auto-rgn", "lp-ft", "llrd"])
def test_every_strategy_refits_the_pick_only(conv7, target, strategy):
    tuner = fit(conv7, target, strategy=strategy, max_epochs=3, halving_min_epochs=1)
    selected = tuner.selected_unit_
    changed = differing_keys(conv7.module_, tuner.net_.module_)
    assert changed
    results = tuner.selection_results_
    trained = results["units"][results["picked"]][0]  # what the pick trained
    if trained not in ("all", "ss"):
        names = selected if isinstance(selected, tuple) else (selected,)
        assert all(key.split(".")[0] in names for key in changed)
    assert conv7.module_.state_dict().keys() == tuner.net_.module_.state_dict().keys()


def _steps_per_epoch(records, refit):
    """Optimizer steps of the first epoch of the selection run or of the refit."""
    return next(r.n_steps for r in records if r.refit == refit and r.epoch == 1)


def test_refit_trains_on_training_and_validation_data_for_the_peak_epochs(conv4, target):
    records = []
    tuner = fit(conv4, target, strategy="ft-all", on_epoch=records.append)
    # batches of 32: 100 training images are 4 steps, with the 200 validation ones 10
    assert _steps_per_epoch(records, refit=False) == 4
    assert _steps_per_epoch(records, refit=True) == 10
    refit = [r for r in records if r.refit]
    assert all(r.val_accuracy is None for r in refit)
    assert tuner.best_epochs_["all"] >= 1
    assert refit[-1].epoch == tuner.best_epochs_["all"] == tuner.refit_epochs_
    assert refit[-1].n_steps == 10 * tuner.refit_epochs_  # full passes


def test_refit_for_the_peak_steps(conv4, target):
    import flexsk

    records = []
    with flexsk.config_context(refit_length="steps"):
        tuner = fit(conv4, target, strategy="ft-all", on_epoch=records.append)
    assert [r for r in records if r.refit][-1].n_steps == 4 * tuner.best_epochs_["all"]


@pytest.mark.parametrize("max_epochs, refit_epochs", [("auto", 200), (400, 250)])
def test_refit_epochs_stay_within_twice_the_budget_of_a_run_on_all_the_data(
        conv4, target, max_epochs, refit_epochs):
    # 2 images per class: 20 training images are one step an epoch, so "auto" gives a
    # selection run 400 epochs (400 steps); on 220 images (7 steps an epoch) it gives
    # 100 epochs, twice which caps the refit. Validated every 10 epochs, the scripted
    # score rises until epoch 250.
    X, y = target["X"][::5], target["y"][::5]
    scripted = Scripted([0.1 + 0.01 * min(k, 25) for k in range(60)])
    tuner = FlexTuner(scripted.net(conv4), strategy="ft-fc", scoring=scripted.score,
                      max_epochs=max_epochs, random_state=0).fit(
        X, y, X_val=target["X_val"], y_val=target["y_val"])
    assert len(X) == 20 and tuner.best_epochs_ == {"fc2": 250}
    assert tuner.refit_epochs_ == refit_epochs


def test_refit_with_the_internal_split_uses_every_sample(conv4, target):
    records = []
    FlexTuner(conv4, strategy="ft-fc", on_epoch=records.append, **FAST).fit(
        target["X"], target["y"])
    # 80 of the 100 images train the selection run (3 batches of 32), all 100 the refit (4)
    assert _steps_per_epoch(records, refit=False) == 3
    assert _steps_per_epoch(records, refit=True) == 4


def test_a_pick_that_peaked_at_epoch_0_stays_pretrained(conv4, target):
    scripted = Scripted([(0.5, 1.0)])
    with pytest.warns(SelectionWarning, match="No candidate ranks above the pretrained net"):
        tuner = fit(scripted.net(conv4), target, strategy="ft-fc", scoring=scripted.score)
    assert tuner.best_epochs_ == {"fc2": 0} and tuner.refit_epochs_ == 0
    assert state_hash(tuner.net_.module_) == state_hash(conv4.module_)


# -- SelectionWarning and divergence ------------------------------------------------------------


STRATEGIES = ["flex", "fast", "faster", "rgn-unit", "halving", "ft-all", "ft-fc", "ft-ss",
              "auto-rgn", "lp-ft", "llrd"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_clean_fit_gives_no_selection_warning(conv4, target, strategy):
    # the selection's warnings; a refit of these few epochs may fail its own check, which
    # test_misuse.py tests
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelectionWarning)
        fit(conv4, target, strategy=strategy, halving_min_epochs=1, refit=False)


def test_a_tiny_lr_gives_a_selection_warning(conv4, target):
    with pytest.warns(SelectionWarning, match="larger lr"):
        fit(conv4, target, strategy="fast", lr=1e-12)


def _sgd_net(net):
    return NeuralNetClassifier(copy.deepcopy(net.module_), criterion=net.criterion,
                               optimizer=torch.optim.SGD, lr=1e-3,
                               batch_size=net.batch_size).initialize()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_huge_lr_raises_or_warns(conv4, target, strategy, optimizer):
    net = conv4 if optimizer == "adam" else _sgd_net(conv4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit(net, target, strategy=strategy, lr=1e3, halving_min_epochs=1)
        except ValueError as error:
            assert "diverged" in str(error)
            return
    assert any(issubclass(w.category, SelectionWarning) for w in caught)


def test_a_pick_whose_loss_grew_far_above_the_pretrained_nets_is_flagged(conv4, target):
    # one more sample right, but confidently wrong elsewhere: the loss 50 times the start's
    scripted = Scripted([(0.5, 1.0), (0.51, 50.0), (0.4, 60.0)])
    with pytest.warns(SelectionWarning, match=r"validation loss of 50, 50 times the "
                                              r"pretrained net's 1 \(accuracy ") as caught:
        tuner = fit(scripted.net(conv4), target, strategy="ft-fc", refit=False,
                    scoring=scripted.score)
    assert tuner.best_epochs_ == {"fc2": 1}
    # the accuracies it quotes are the pick's and the pretrained net's (not scripted)
    accuracy = tuner.selection_results_["accuracy"][0]
    assert any(re.search(rf"\(accuracy {accuracy:.3f} against \d\.\d{{3}}\)", str(w.message))
               for w in caught)


def test_a_loss_that_falls_while_accuracy_stays_says_which_signal_moved(conv4, target):
    # the confidently wrong start: the loss falls fivefold, the score (what ranks in place
    # of the accuracy) never rises
    scripted = Scripted([(0.5, 25.0), (0.3, 20.0), (0.2, 10.0), (0.45, 5.0)])
    with pytest.warns(SelectionWarning, match=r"The validation loss fell from 25 to 5 "
                                              r"\('fc2'\), but score never rose above "
                                              r"0.500\. Training was still lowering the loss"):
        fit(scripted.net(conv4), target, strategy="ft-fc", max_epochs=3,
            scoring=scripted.score)


class _InfiniteGradient(torch.autograd.Function):
    """The identity, whose gradient is infinite: one optimizer step ruins the weights."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class _ExplodingLinear(nn.Linear):
    def forward(self, x):
        return nn.functional.linear(x, _InfiniteGradient.apply(self.weight), self.bias)


class _Exploding(nn.Module):
    """Tuning ``body`` (or everything) diverges at once; tuning ``stem`` or ``head`` does not."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.body = nn.Sequential(_ExplodingLinear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def _exploding_net():
    torch.manual_seed(0)
    return NeuralNetClassifier(_Exploding(), criterion=nn.CrossEntropyLoss,
                               optimizer=torch.optim.SGD, lr=1.0)


def test_diverged_runs_are_never_selected_and_named(target):
    with pytest.warns(SelectionWarning, match=r"diverged .* for body, all;"):
        tuner = fit(_exploding_net(), target, strategy="flex")
    assert tuner.selected_unit_ in ("stem", "head")
    assert np.isnan(tuner.validation_losses_["body"]) and np.isnan(
        tuner.validation_losses_["all"])
    assert np.isfinite(tuner.predict_proba(target["X_test"])).all()


def test_a_diverged_ft_all_makes_the_proxies_meaningless(target):
    with pytest.warns(SelectionWarning, match="proxy scores mean nothing"):
        tuner = fit(_exploding_net(), target, strategy="fast")
    assert tuner.selected_unit_ == "stem"  # every proxy ties: the earliest unit


def _late_donor(ctx):
    """A schedule whose proxies' donor, ft-all, trains after another run and diverges."""
    first = ctx.tune("head")
    donor = ctx.tune("all")
    return Outcome("head", {"head": first, "all": donor},
                   ctx.proxy_evaluations(donor.module), donor="all")


def test_a_diverged_donor_is_reported_wherever_it_trained(target):
    with pytest.warns(SelectionWarning, match="proxy scores mean nothing"):
        fit(_exploding_net(), target, strategy=_late_donor)


def test_every_run_diverged_raises(target):
    with pytest.raises(ValueError, match=r"diverged \(non-finite loss\) at lr=1 "):
        fit(_exploding_net(), target, strategy="ft-all")


def test_a_single_class_raises(conv4, target):
    y = np.full_like(target["y"], 3)
    with pytest.raises(ValueError, match="number of classes has to be greater than one"):
        FlexTuner(conv4, **FAST).fit(target["X"], y)


# -- patience -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_per_class, patience", [
    (2, 40),   # 20 images, one step an epoch: 40 epochs are 40 steps
    (10, 10),  # 100 images, 4 steps an epoch: 10 epochs are 40 steps
    (40, 5),   # the whole pool, 13 steps an epoch: 5 epochs
])
def test_auto_patience_waits_for_enough_optimizer_steps(conv4, target, n_per_class, patience):
    # one improvement, then nothing: the run stops after patience more epochs
    scripted = Scripted([(0.1, 1.0), (0.5, 1.0)])
    keep = np.concatenate([np.flatnonzero(target["y"] == c)[:n_per_class] for c in range(10)])
    pool = target["X"] if n_per_class <= 10 else np.concatenate([target["X"]] * 4)
    labels = target["y"] if n_per_class <= 10 else np.concatenate([target["y"]] * 4)
    if n_per_class > 10:
        keep = np.arange(len(labels))
    tuner = FlexTuner(scripted.net(conv4), strategy="ft-fc", max_epochs=100, validate_every=1,
                      random_state=0, refit=False, scoring=scripted.score).fit(
        pool[keep], labels[keep], X_val=target["X_val"], y_val=target["y_val"])
    assert tuner.best_epochs_ == {"fc2": 1}
    assert tuner.n_epochs_ == {"fc2": 1 + patience}
    assert FlexTuner(conv4).patience == "auto"


@pytest.mark.parametrize("n_per_class, max_epochs", [(2, 400), (10, 100)])
def test_auto_max_epochs_is_at_least_400_optimizer_steps(conv4, target, n_per_class,
                                                         max_epochs):
    # the loss falls a little every epoch: the run goes on until max_epochs
    scripted = Scripted([(0.5, 10.0 - 0.01 * epoch) for epoch in range(500)])
    keep = np.concatenate([np.flatnonzero(target["y"] == c)[:n_per_class] for c in range(10)])
    tuner = FlexTuner(scripted.net(conv4), strategy="ft-fc", random_state=0, refit=False,
                      scoring=scripted.score).fit(
        target["X"][keep], target["y"][keep], X_val=target["X_val"], y_val=target["y_val"])
    assert tuner.n_epochs_ == {"fc2": max_epochs} == tuner.best_epochs_
    assert FlexTuner(conv4).max_epochs == "auto"


# -- cross-validated selection ------------------------------------------------------------------


def test_cv_scores_candidates_on_folds_then_refits(conv4, target):
    tuner = refitted(lambda: FlexTuner(conv4, strategy="flex", cv=3, **FAST).fit(
        target["X"], target["y"]))
    assert set(tuner.validation_scores_) == set(tuner.units_) | {"all"}
    assert tuner.predict(target["X_test"]).shape == target["y_test"].shape
    same = FlexTuner(conv4, strategy="flex", cv=StratifiedKFold(3), **FAST).fit(
        target["X"], target["y"])
    assert same.validation_scores_ == tuner.validation_scores_


def test_cv_needs_refit(conv4, target):
    with pytest.raises(ValueError, match="needs refit=True"):
        FlexTuner(conv4, cv=3, refit=False, **FAST).fit(target["X"], target["y"])


def test_a_huge_lr_that_only_makes_the_loss_grow_says_so(conv4, target):
    # every epoch: a lower score and a loss 100 times the start's, still finite
    scripted = Scripted([(0.5, 1.0)] + [(0.4, 100.0)] * 20)
    with pytest.warns(SelectionWarning, match="may be too large; try a smaller one"):
        fit(scripted.net(conv4), target, strategy="ft-fc", scoring=scripted.score)


def _at_chance(ctx):
    """A schedule whose pick improved on its start but validates at 1 in 10 correct.

    The check reads the pick's own accuracy, which no scorer replaces: the schedule
    reports its real run with that accuracy."""
    run = ctx.tune("fc2")
    assert run.improved  # so that the check goes past "nothing improved"
    return Outcome("fc2", {"fc2": dataclasses.replace(run, evaluation=Evaluation(0.1, 2.0))})


def test_a_pick_at_chance_level_is_flagged(conv4, target):
    with pytest.warns(SelectionWarning, match=r"The selected 'fc2' validates at chance level "
                                              r"\(accuracy 0.100 with 10 classes\)"):
        fit(conv4, target, strategy=_at_chance, refit=False)


def test_selection_warnings_point_at_the_line_that_called_fit(conv4, target):
    # a tiny lr improves nothing (a SelectionWarning), and one epoch under patience 2 ends
    # the pick's run at max_epochs with its best epoch among its last ones (a
    # ConvergenceWarning): both are the caller's to read, at the line of its fit
    tuner = FlexTuner(conv4, strategy="ft-fc", lr=1e-12, max_epochs=1, patience=2,
                      refit=False, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        tuner.fit(target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    ours = [w for w in caught if issubclass(w.category, (SelectionWarning, ConvergenceWarning))]
    assert {w.category for w in ours} == {SelectionWarning, ConvergenceWarning}
    assert [(w.filename, w.lineno) for w in ours] == [(__file__, line)] * len(ours)
