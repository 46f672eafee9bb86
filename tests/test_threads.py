"""One fitted tuner answers many threads at once, each with its own answer."""

import threading

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from flexsk import FlexTuner


@pytest.fixture(scope="module")
def shared(_conv4, target):
    tuner = FlexTuner(_conv4, strategy="ft-fc", max_epochs=2, patience=2, random_state=0)
    tuner.fit(target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    pipeline = make_pipeline(FlexTuner(_conv4, strategy="ft-fc", max_epochs=2, patience=2,
                                       random_state=0),
                             LogisticRegression(max_iter=200))
    pipeline.fit(target["X"], target["y"])
    return tuner, pipeline


def _calls(tuner, pipeline):
    return {"transform": tuner.transform, "pretrained_transform": tuner.pretrained_transform,
            "predict": tuner.predict, "predict_proba": tuner.predict_proba,
            "pipeline.predict": pipeline.predict}


def hammer(tuner, pipeline, inputs, n_threads, n_calls):
    """``n_threads`` threads, each making ``n_calls`` calls that cycle through the methods
    and the inputs; returns the wrong answers and the errors, as text."""
    calls = _calls(tuner, pipeline)
    expected = {(name, i): call(X) for name, call in calls.items()
                for i, X in enumerate(inputs)}
    problems = []
    start = threading.Barrier(n_threads)

    def work(offset):
        start.wait()
        for k in range(n_calls):
            name = list(calls)[(k + offset) % len(calls)]
            i = (k + offset) % len(inputs)
            try:
                got = calls[name](inputs[i])
            except Exception as exc:  # noqa: BLE001 - every error is a failure here
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            want = expected[(name, i)]
            same = (np.array_equal(got, want) if got.dtype.kind in "iuOUSb"
                    else np.allclose(got, want, rtol=1e-4, atol=1e-5))
            if got.shape != want.shape or not same:
                problems.append(f"{name} on input {i}: a wrong answer")

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return problems


def _inputs(target):
    # two inputs of different sizes: an answer meant for the other one is caught by shape too
    return [target["X_test"][:37], target["X_test"][37:101]]


def test_concurrent_inference_gives_every_thread_its_own_answer(shared, target):
    tuner, pipeline = shared
    assert hammer(tuner, pipeline, _inputs(target), n_threads=8, n_calls=25) == []


@pytest.mark.slow
def test_concurrent_inference_under_load(shared, target):
    tuner, pipeline = shared
    assert hammer(tuner, pipeline, _inputs(target), n_threads=8, n_calls=200) == []
