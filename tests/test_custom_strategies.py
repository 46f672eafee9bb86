"""Users' own strategies: a schedule over the public training context, like the built-ins."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from conftest import refitted

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
    tuner = refitted(lambda: FlexTuner(conv4, strategy=_strategy(name), cv=3, n_jobs=2,
                                       **FAST).fit(target["X"], target["y"]))
    assert tuner.selected_unit_ in tuner.units_ + ["all"]
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
    assert set(BUILTIN) == {"flex", "fast", "faster", "rgn-unit", "halving", "ft-all", "ft-fc",
                            "ft-ss", "auto-rgn", "lp-ft", "llrd"}
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


# -- options: one table for the built-ins, and options of your own ---------------------------


def test_flextuner_takes_every_builtin_option_with_its_default_and_docstring():
    import inspect

    from flexsk._strategies import OPTIONS

    signature = inspect.signature(FlexTuner.__init__).parameters
    for name, option in OPTIONS.items():
        assert signature[name].default == option.default
        assert FlexTuner._parameter_constraints[name] == list(option.constraints)
        assert f"    {name} : {option.kind}, default=" in FlexTuner.__doc__


def last_k(ctx, *, k):
    """Tune the last ``k`` units together."""
    names = tuple(unit.name for unit in ctx.units[-k:])
    key = names[0] if k == 1 else names
    return Outcome(key, {key: ctx.tune(key)})


def _last_k(**values):
    from numbers import Integral

    from sklearn.utils._param_validation import Interval

    from flexsk.strategies import Option

    k = Option("k", 1, (Interval(Integral, 1, None, closed="left"),), "int",
               "Last units tuned together.")
    return Strategy("last-k", last_k, options=(k,), **values)


def test_a_strategy_declares_options_of_its_own(conv4, target):
    strategy = _last_k(k=2)
    tuner = FlexTuner(conv4, strategy=strategy, **FAST).fit(target["X"], target["y"])
    assert tuner.selected_unit_ == ("fc1", "fc2")
    tuner.set_params(strategy__k=1)
    assert strategy.values == {"k": 2}  # the record passed in keeps its settings
    assert tuner.fit(target["X"], target["y"]).selected_unit_ == "fc2"
    assert clone(tuner).strategy.values == {"k": 1}
    assert FlexTuner(conv4, strategy=_last_k(), **FAST).fit(
        target["X"], target["y"]).selected_unit_ == "fc2"  # the default


def test_grid_search_over_a_strategys_own_option(conv4, target):
    search = GridSearchCV(FlexTuner(conv4, strategy=_last_k(), **FAST),
                          {"strategy__k": [1, 2]}, cv=2)
    search.fit(target["X"], target["y"])
    assert sorted(p["strategy__k"] for p in search.cv_results_["params"]) == [1, 2]
    assert search.best_estimator_.strategy.values["k"] == search.best_params_["strategy__k"]


def test_a_strategys_own_options_are_checked(conv4, target):
    with pytest.raises(InvalidParameterError, match=r"'k' parameter of Strategy 'last-k'"):
        FlexTuner(conv4, strategy=_last_k(k=0), **FAST).fit(target["X"], target["y"])
    with pytest.raises(ValueError, match=r"Invalid parameter 'j' for strategy 'last-k': it "
                                         r"declares the options \['k'\]"):
        FlexTuner(conv4, strategy=_last_k()).set_params(strategy__j=3)
    with pytest.raises(TypeError, match=r"options must be flexsk.strategies.Option records"):
        FlexTuner(conv4, strategy=Strategy("k", last_k, options=("k",)), **FAST).fit(
            target["X"], target["y"])


# -- the training context: one contract, two implementations ---------------------------------


@pytest.mark.parametrize("cv", [None, 2])
def test_both_training_contexts_implement_the_whole_contract(conv4, target, cv):
    import inspect

    from flexsk.strategies import TrainingContext

    contexts = []

    def capture(ctx):
        contexts.append(ctx)
        return Outcome("fc2", {"fc2": ctx.tune("fc2")})

    FlexTuner(conv4, strategy=capture, cv=cv, **FAST).fit(target["X"], target["y"])
    ctx, = contexts
    attributes = set(TrainingContext.__annotations__)
    methods = {name for name, member in vars(TrainingContext).items()
               if inspect.isfunction(member) and not name.startswith("_")}
    assert {"units", "runs", "pretrained_evaluation", "config"} <= attributes
    assert {"tune", "tune_many", "evaluate", "on_all_data"} <= methods
    missing = [name for name in attributes | methods if not hasattr(ctx, name)]
    assert missing == []
    for name in methods:  # the same parameters as the contract
        assert (inspect.signature(getattr(TrainingContext, name)).parameters.keys() - {"self"}
                <= inspect.signature(getattr(ctx, name)).parameters.keys()), name
