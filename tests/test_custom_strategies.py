"""Users' own strategies: a schedule over the public training context, like the built-ins."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from flexsk import FlexTuner, SelectionWarning
from flexsk.strategies import BUILTIN, Outcome, Strategy, best_of

FAST = dict(max_epochs=2, patience=1, random_state=0)


def best_proxy_loss(ctx):
    """A new rule: a short ft-all, then the unit whose proxy net has the lowest loss."""
    donor = ctx.tune("all", stopping=ctx.stopping.replace(max_epochs=1, patience=None),
                     keep_best=False)
    proxies = ctx.proxy_evaluations(donor.module)
    unit = min(proxies, key=lambda name: proxies[name].loss)
    return Outcome(unit, {unit: ctx.tune(unit)}, proxies, donor="all")


def last_two(ctx):
    """Flex-tuning over the last two units."""
    tuned = ctx.tune_many([unit.name for unit in ctx.units[-2:]])
    return Outcome(best_of({key: t.evaluation for key, t in tuned.items()}), tuned)


USERS = {"best_proxy_loss": Strategy("best_proxy_loss", best_proxy_loss, single_unit=True),
         "last_two": last_two}


def _strategy(name):
    return USERS.get(name, name)


@pytest.mark.parametrize("name", list(USERS) + ["flex", "fast", "halving"])
def test_a_strategy_works_with_cv_jobs_refit_and_pickle(conv4, target, name):
    tuner = FlexTuner(conv4, strategy=_strategy(name), cv=3, n_jobs=2, **FAST).fit(
        target["X"], target["y"])
    assert tuner.selected_unit_ in tuner.units_ + ["all"]
    assert tuner.refit_epochs_ is not None
    restored = pickle.loads(pickle.dumps(tuner))
    np.testing.assert_allclose(restored.predict_proba(target["X_test"]),
                               tuner.predict_proba(target["X_test"]))
    assert clone(tuner).strategy == tuner.strategy


@pytest.mark.parametrize("name", ["best_proxy_loss", "flex"])
def test_a_single_unit_strategy_grows_with_max_units(conv4, target, name):
    tuner = FlexTuner(conv4, strategy=_strategy(name), max_units=2, pair_margin=0.0,
                      **FAST).fit(target["X"], target["y"], X_val=target["X_val"],
                                  y_val=target["y_val"])
    pairs = [key for key in tuner.validation_scores_ if isinstance(key, tuple)]
    assert len(pairs) == len(tuner.units_) - 1  # every other unit tried beside the pick


def test_a_plain_schedule_is_not_grown(conv4, target):
    with pytest.raises(ValueError, match=r"strategy='last_two' tunes a fixed selection"):
        FlexTuner(conv4, strategy=last_two, max_units=2, **FAST).fit(target["X"], target["y"])


def test_grid_search_over_built_in_and_own_strategies(conv4, target):
    search = GridSearchCV(FlexTuner(conv4, **FAST),
                          {"strategy": ["fast", last_two, USERS["best_proxy_loss"]]}, cv=2)
    search.fit(target["X"], target["y"])
    assert len(search.cv_results_["mean_test_score"]) == 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_the_built_ins_are_strategies_of_the_same_interface():
    assert set(BUILTIN) == {"flex", "fast", "faster", "rgn", "halving", "ft-all", "ft-fc",
                            "ft-ss"}
    assert all(isinstance(s, Strategy) and s.name == name for name, s in BUILTIN.items())


def test_a_schedule_must_return_an_outcome(conv4, target):
    with pytest.raises(TypeError, match=r"strategy 'bad' returned str; a schedule must "
                                        r"return a flexsk.strategies.Outcome"):
        FlexTuner(conv4, strategy=Strategy("bad", lambda ctx: "fc2"), **FAST).fit(
            target["X"], target["y"])
    with pytest.raises(ValueError, match=r"selected 'fc1', which is not among the models"):
        FlexTuner(conv4, strategy=Strategy("bad", lambda ctx: Outcome(
            "fc1", {"fc2": ctx.tune("fc2")})), **FAST).fit(target["X"], target["y"])


@pytest.mark.parametrize("strategy", ["fastest", 3, None])
def test_an_unknown_strategy_is_refused(conv4, target, strategy):
    with pytest.raises(InvalidParameterError, match="strategy"):
        FlexTuner(conv4, strategy=strategy).fit(target["X"], target["y"])


def continue_from_fc2(ctx):
    """Tunes fc1 starting from the fc2 run's weights."""
    first = ctx.tune("fc2")
    second = ctx.tune("fc1", start=first.module)
    return Outcome("fc1", {"fc2": first, "fc1": second})


def test_a_pick_that_continued_other_weights_says_how_it_is_refitted(conv4, target):
    with pytest.warns(SelectionWarning, match=r"continued from weights other than the "
                                              r"pretrained ones \(start=\)"):
        FlexTuner(conv4, strategy=continue_from_fc2, **FAST).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


def test_mistakes_in_a_schedule_get_clear_errors(conv4, target):
    with pytest.raises(ValueError, match=r"Cannot tune 'nope': 'nope' is not a unit. The "
                                         r"units are \['conv1', 'conv2', 'fc1', 'fc2'\]"):
        FlexTuner(conv4, strategy=lambda ctx: ctx.tune("nope"), **FAST).fit(
            target["X"], target["y"])
    with pytest.raises(TypeError, match=r"Outcome.tuned values that are not Tuned"):
        FlexTuner(conv4, strategy=lambda ctx: Outcome("fc2", {"fc2": ctx.tune("fc2").module}),
                  **FAST).fit(target["X"], target["y"])
    with pytest.raises(TypeError, match=r"strategy=Strategy is a class"):
        FlexTuner(conv4, strategy=Strategy, **FAST).fit(target["X"], target["y"])
