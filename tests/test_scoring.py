"""FlexTuner's ``scoring``: what ranks candidates, early-stopping epochs and the checks."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, make_scorer
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from flexsk import FlexTuner
from flexsk.datasets import load_digits_source
from flexsk.metrics import make_retrieval_scorer

FAST = dict(max_epochs=3, patience=2, random_state=0)
STRATEGIES = ["flex", "fast", "faster", "halving", "ft-all", "ft-fc", "ft-ss", "rgn-unit",
              "auto-rgn", "lp-ft", "llrd"]


def fit(net, target, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs warn that they stopped at their cap
        return FlexTuner(net, **{**FAST, **params}).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


@pytest.fixture(scope="module")
def gallery():
    return load_digits_source(split="test", image_size=8, return_X_y=True)


def test_accuracy_scorer_ranks_as_the_default(conv4, target):
    default = fit(conv4, target, strategy="flex", refit=False)
    scored = fit(conv4, target, strategy="flex", refit=False, scoring="accuracy")
    # the scorer's accuracy is computed from the same validation outputs
    assert scored.validation_scores_ == pytest.approx(default.validation_scores_, abs=1e-12)
    assert scored.selected_unit_ == default.selected_unit_
    assert scored.best_epochs_ == default.best_epochs_


def test_the_pick_maximizes_the_score(conv4, target):
    def worst(estimator, X, y):  # ranks by the fewest correct: a scorer flexsk never guesses
        return -float(np.mean(estimator.predict(X) == y))

    tuner = fit(conv4, target, strategy="flex", refit=False, scoring=worst)
    scores = tuner.validation_scores_
    assert all(score <= 0 for score in scores.values())
    assert scores[tuner.selected_unit_] == max(scores.values())
    results = tuner.selection_results_
    assert list(results["score"]) == [scores[key] for key in scores]
    assert np.all(results["accuracy"] == -results["score"])


@pytest.mark.parametrize("strategy", ["flex", "fast"])
def test_neg_log_loss_is_minus_the_validation_loss(conv4, target, strategy):
    tuner = fit(conv4, target, strategy=strategy, refit=False, scoring="neg_log_loss")
    for key, score in tuner.validation_scores_.items():
        assert score == pytest.approx(-tuner.validation_losses_[key], rel=1e-4)
    assert len(tuner.proxy_scores_) == 4  # flex keeps the proxies of its ft-all run too
    for key, score in tuner.proxy_scores_.items():
        assert score == pytest.approx(-tuner.proxy_losses_[key], rel=1e-4)


def test_the_scorer_sees_the_validation_samples_and_their_labels(conv4, target):
    seen = []
    labels = np.array([f"digit {d}" for d in range(10)])

    def record(estimator, X, y):
        seen.append((X, y, estimator.predict(X), estimator.predict_proba(X),
                     estimator.decision_function(X), estimator.classes_))
        return float(np.mean(estimator.predict(X) == y))

    tuner = FlexTuner(conv4, strategy="ft-fc", head="new", scoring=record, refit=False, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.fit(target["X"], labels[target["y"]], X_val=target["X_val"],
                  y_val=labels[target["y_val"]])
    n_val = len(target["y_val"])
    assert seen
    for X, y, predicted, proba, decision, classes in seen:
        assert X.shape == (n_val, 1) and np.array_equal(X[:, 0], np.arange(n_val))
        assert np.array_equal(y, labels[target["y_val"]])
        assert np.array_equal(classes, tuner.classes_)
        assert set(predicted) <= set(labels)
        np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
        assert np.array_equal(predicted, classes[decision.argmax(1)])


def test_a_scorer_during_a_fit_takes_validation_positions_only(conv4, target):
    def on_new_inputs(estimator, X, y):
        return float(np.mean(estimator.predict(target["X_test"][:len(y)]) == y))

    with pytest.raises(ValueError, match="positions of the validation samples"):
        fit(conv4, target, strategy="ft-fc", scoring=on_new_inputs)


@pytest.mark.parametrize("value, error, match", [
    (float("nan"), ValueError, "ranks nothing"),
    ("high", TypeError, "returns one number"),
])
def test_a_scorer_must_return_a_finite_number(conv4, target, value, error, match):
    with pytest.raises(error, match=match):
        fit(conv4, target, strategy="ft-fc", scoring=lambda estimator, X, y: value)


@pytest.mark.parametrize("scoring", ["balanced_acc", {"a": "accuracy"}, ["accuracy"], 3])
def test_scoring_is_checked(conv4, target, scoring):
    with pytest.raises(InvalidParameterError, match="scoring"):
        FlexTuner(conv4, scoring=scoring).fit(target["X"], target["y"])


def test_epoch_records_carry_the_score(conv4, target):
    records, plain = [], []
    fit(conv4, target, strategy="ft-fc", scoring="balanced_accuracy", on_epoch=records.append)
    fit(conv4, target, strategy="ft-fc", on_epoch=plain.append)
    validated = [r for r in records if r.val_accuracy is not None]
    assert validated and all(0 <= r.val_score <= 1 for r in validated)
    assert all(r.val_score is None for r in records if r.val_accuracy is None)
    assert all(r.val_score is None for r in plain)


def test_score_candidates_takes_a_scoring(conv4, target):
    tuner = fit(conv4, target, strategy="flex", refit=False, keep_candidates=True,
                scoring="balanced_accuracy")
    X, y = target["X_test"], target["y_test"]
    accuracy = tuner.score_candidates(X, y)
    balanced = tuner.score_candidates(X, y, scoring=tuner.scoring)
    assert accuracy.keys() == balanced.keys() == tuner.candidates_.keys()
    picked = tuner.selected_unit_  # without a refit, the tuner's model is the candidate's
    assert accuracy[picked] == pytest.approx(tuner.score(X, y))
    assert balanced[picked] == pytest.approx(balanced_accuracy_score(y, tuner.predict(X)))
    scorer = make_scorer(balanced_accuracy_score)
    assert tuner.score_candidates(X, y, scoring=scorer) == pytest.approx(balanced)
    with pytest.raises(TypeError, match="scorer name"):
        tuner.score_candidates(X, y, scoring=3)


def test_retrieval_scoring_selects_by_map(conv4, target, gallery):
    X_source, y_source = gallery
    scorer = make_retrieval_scorer(X_source, y_source, k=10)
    tuner = fit(conv4, target, strategy="flex", refit=False, keep_candidates=True,
                scoring=scorer)
    scores = tuner.validation_scores_
    assert all(0 <= score <= 1 for score in scores.values())
    assert scores[tuner.selected_unit_] == max(scores.values())  # ties: the loss decides
    # the pick's validation score is the scorer's own on the validation data
    candidate = tuner.score_candidates(target["X_val"], target["y_val"], scoring=scorer)
    assert candidate[tuner.selected_unit_] == pytest.approx(scores[tuner.selected_unit_],
                                                            abs=1e-6)


def test_retrieval_scoring_before_a_cut(conv4, target, gallery):
    """Candidates that train after the embedding (on cached inputs) keep the pretrained
    embedding: they all score the same."""
    X_source, y_source = gallery
    scorer = make_retrieval_scorer(X_source, y_source, k=10)
    tuner = fit(conv4, target, strategy="flex", refit=False, embedding_unit="conv2",
                scoring=scorer)
    scores = tuner.validation_scores_
    assert scores["fc1"] == scores["fc2"]
    fast = fit(conv4, target, strategy="fast", refit=False, embedding_unit="conv2",
               scoring=scorer)
    proxies = fast.proxy_scores_
    assert proxies["fc1"] == proxies["fc2"] == scores["fc1"]


@pytest.mark.parametrize("strategy", ["flex", "fast"])
def test_scoring_with_cross_validation(conv4, target, strategy):
    pd = pytest.importorskip("pandas")
    tuner = fit(conv4, target, strategy=strategy, cv=3, scoring="f1_macro")
    table = pd.DataFrame(tuner.selection_results_)
    assert (table["score_std"] >= 0).all() and table["score"].between(0, 1).all()
    assert dict(zip(table["candidate"], table["score"])) == pytest.approx(
        tuner.validation_scores_)
    assert table.loc[table["picked"], "candidate"].item() == tuner.selected_unit_


def test_grid_search_over_scoring_clone_and_pickle(conv4, target, gallery):
    scorer = make_retrieval_scorer(*gallery, k=10)
    tuner = FlexTuner(conv4, strategy="ft-fc", scoring=scorer, **FAST)
    assert clone(tuner).scoring is not None
    search = GridSearchCV(FlexTuner(conv4, strategy="ft-fc", **FAST),
                          {"scoring": [None, "balanced_accuracy"]}, cv=2, scoring="accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(target["X"], target["y"])
        fitted = tuner.fit(target["X"], target["y"])
    assert search.best_params_["scoring"] in (None, "balanced_accuracy")
    assert len(search.cv_results_["mean_test_score"]) == 2
    restored = pickle.loads(pickle.dumps(fitted))
    assert repr(restored.scoring) == repr(scorer)
    X = torch.as_tensor(target["X_test"][:20])
    assert np.array_equal(restored.predict(X), fitted.predict(X))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_selection_results_is_a_table(conv4, target, strategy):
    pd = pytest.importorskip("pandas")
    tuner = fit(conv4, target, strategy=strategy, halving_min_epochs=1)
    table = pd.DataFrame(tuner.selection_results_)
    columns = ["candidate", "units", "n_trained_params", "score", "score_std", "accuracy",
               "loss", "proxy_score", "proxy_loss", "n_epochs", "best_epoch", "n_steps",
               "max_epochs_reached", "fit_seconds", "rank", "picked"]
    assert list(table.columns) == columns
    assert len(table) == len(tuner.validation_scores_) and table["picked"].sum() == 1
    assert sorted(table["rank"]) == list(range(1, len(table) + 1))
    assert (table["n_trained_params"] > 0).all() and (table["fit_seconds"] >= 0).all()
