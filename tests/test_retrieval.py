"""make_retrieval_scorer: mAP@k of tuned embeddings against the pretrained source gallery."""

import pickle

import numpy as np
import pytest
from skorch import NeuralNetClassifier
from sklearn.exceptions import NotFittedError
from torch import nn
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from flexsk import FlexTuner
from flexsk.datasets import load_digits_source
from flexsk.metrics import make_retrieval_scorer, map_at_k

SETTINGS = dict(max_epochs=3, patience=2, random_state=0)


@pytest.fixture(scope="module")
def source():
    return load_digits_source(split="test", image_size=8, return_X_y=True)


def test_scorer_is_map_of_tuned_queries_against_pretrained_gallery(conv4, target, source):
    X_source, y_source = source
    tuner = FlexTuner(conv4, strategy="ft-all", max_epochs=5, patience=None,
                      random_state=0).fit(target["X"], target["y"], X_val=target["X_val"],
                                          y_val=target["y_val"])
    assert not np.allclose(tuner.transform(X_source), tuner.pretrained_transform(X_source))
    scorer = make_retrieval_scorer(X_source, y_source, k=5, metric="cosine")
    expected = map_at_k(tuner.transform(target["X_test"]), target["y_test"],
                        tuner.pretrained_transform(X_source), y_source, k=5, metric="cosine")
    assert scorer(tuner, target["X_test"], target["y_test"]) == pytest.approx(expected)
    # the gallery is the *pretrained* embedding: the tuned one gives another score
    tuned_gallery = map_at_k(tuner.transform(target["X_test"]), target["y_test"],
                             tuner.transform(X_source), y_source, k=5, metric="cosine")
    assert tuned_gallery != pytest.approx(expected)


def test_gallery_computed_once_per_pretrained_weights_and_cut(conv4, target, source,
                                                              monkeypatch):
    calls = []
    original = FlexTuner.pretrained_transform

    def spy(self, X):
        calls.append(self.embedding_unit)
        return original(self, X)

    monkeypatch.setattr(FlexTuner, "pretrained_transform", spy)
    scorer = make_retrieval_scorer(*source)
    for strategy in ("ft-fc", "ft-all"):
        tuner = FlexTuner(conv4, strategy=strategy, **SETTINGS).fit(target["X"], target["y"])
        scorer(tuner, target["X_test"], target["y_test"])
        scorer(tuner, target["X_val"], target["y_val"])
    assert calls == [None]
    tuner = FlexTuner(conv4, strategy="ft-fc", embedding_unit="fc1", **SETTINGS).fit(
        target["X"], target["y"])
    scorer(tuner, target["X_test"], target["y_test"])
    assert calls == [None, "fc1"]  # another cut, another gallery


def test_pipeline_preprocesses_the_source(conv4, target, source):
    X_source, y_source = source
    pipe = make_pipeline(FunctionTransformer(lambda X: 1.0 - X),
                         FlexTuner(conv4, strategy="ft-fc", **SETTINGS))
    pipe.fit(target["X"], target["y"])
    scorer = make_retrieval_scorer(X_source, y_source)
    tuner = pipe[-1]
    expected = map_at_k(tuner.transform(1.0 - target["X_test"]), target["y_test"],
                        tuner.pretrained_transform(1.0 - X_source), y_source)
    unprocessed = map_at_k(tuner.transform(1.0 - target["X_test"]), target["y_test"],
                           tuner.pretrained_transform(X_source), y_source)
    assert scorer(pipe, target["X_test"], target["y_test"]) == pytest.approx(expected)
    assert expected != pytest.approx(unprocessed)


def test_scorer_in_grid_search_and_cross_validate(conv4, target, source):
    scorer = make_retrieval_scorer(*source)
    search = GridSearchCV(FlexTuner(conv4, **SETTINGS), {"strategy": ["ft-fc", "ft-all"]},
                          scoring=scorer, cv=2).fit(target["X"], target["y"])
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    results = cross_validate(FlexTuner(conv4, strategy="ft-fc", **SETTINGS), target["X"],
                             target["y"], cv=2, scoring={"accuracy": "accuracy",
                                                         "map@10": scorer})
    assert set(results) >= {"test_accuracy", "test_map@10"}
    assert np.all(results["test_map@10"] > 0.1)


def test_scorer_pickles_without_its_cache(conv4, target, source):
    scorer = make_retrieval_scorer(*source)
    tuner = FlexTuner(conv4, strategy="ft-fc", **SETTINGS).fit(target["X"], target["y"])
    value = scorer(tuner, target["X_test"], target["y_test"])
    restored = pickle.loads(pickle.dumps(scorer))
    assert restored._galleries == {}
    assert restored(tuner, target["X_test"], target["y_test"]) == value


def test_scorer_bad_input(source):
    X_source, y_source = source
    with pytest.raises(ValueError, match="y_source has"):
        make_retrieval_scorer(X_source, y_source[:-1])
    with pytest.raises(ValueError, match="metric"):
        make_retrieval_scorer(X_source, y_source, metric="manhattan")
    with pytest.raises(ValueError, match="empty"):
        make_retrieval_scorer(X_source, y_source, empty="ignore")
    with pytest.raises(TypeError, match="needs a fitted FlexTuner"):
        make_retrieval_scorer(X_source, y_source)(FunctionTransformer(), X_source, y_source)


def test_scorer_works_on_batchnorm_nets(conv7, target, source):
    # num_batches_tracked is a 0-d buffer: the gallery key must hash it too
    scorer = make_retrieval_scorer(*source)
    tuner = FlexTuner(conv7, strategy="ft-fc", **SETTINGS).fit(target["X"], target["y"])
    value = scorer(tuner, target["X_test"], target["y_test"])
    assert 0 < value <= 1


def test_units_with_the_same_name_but_another_cut_get_their_own_gallery():
    rng = np.random.RandomState(0)
    X_source, y_source = rng.randn(60, 20).astype(np.float32), np.arange(60) % 3
    X, y = rng.randn(30, 20).astype(np.float32), np.arange(30) % 3
    module = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                           nn.Linear(16, 3))
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, lr=0.1)
    scorer = make_retrieval_scorer(X_source, y_source, k=5)
    values = []
    for units in ({"body": ["0"], "head": ["2", "4"]}, {"body": ["0", "2"], "head": ["4"]}):
        tuner = FlexTuner(net, units=units, strategy="ft-fc", **SETTINGS).fit(X, y)
        expected = map_at_k(tuner.transform(X), y, tuner.pretrained_transform(X_source),
                            y_source, k=5)
        values.append(scorer(tuner, X, y))
        assert values[-1] == pytest.approx(expected)
    assert values[0] != pytest.approx(values[1])  # the two cuts embed differently


def test_scorer_on_an_unfitted_tuner(conv4, source):
    with pytest.raises(NotFittedError):
        make_retrieval_scorer(*source)(FlexTuner(conv4), *source)
