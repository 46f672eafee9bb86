"""n_jobs: flex's independent candidates give the same result on any joblib backend."""

import numpy as np
import pytest
import torch
from joblib import parallel_config

from flexsk import FlexTuner

SETTINGS = dict(strategy="flex", max_epochs=4, patience=2, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**SETTINGS, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


@pytest.fixture
def one_thread():
    """Every candidate runs with one torch thread: the parent as the workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def serial(_conv7, target):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit(_conv7, target, n_jobs=1)
    finally:
        torch.set_num_threads(threads)


def assert_same(a, b, X):
    assert a.selected_unit_ == b.selected_unit_
    assert a.validation_scores_ == b.validation_scores_
    assert a.n_epochs_ == b.n_epochs_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_loky_two_jobs_match_serial(conv7, target, serial, one_thread):
    with parallel_config(backend="loky", inner_max_num_threads=1):
        parallel = fit(conv7, target, n_jobs=2)
    assert_same(parallel, serial, target["X_test"])


def test_dask_backend_matches_serial(conv7, target, serial, one_thread, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the worker processes
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with parallel_config(backend="dask"):
            on_dask = fit(conv7, target, n_jobs=2)
    assert_same(on_dask, serial, target["X_test"])


def test_progress_reports_every_parallel_run(conv4, target, capsys):
    with parallel_config(backend="threading"):
        fit(conv4, target, n_jobs=2, verbose=1)
    err = capsys.readouterr().err
    assert "5/5" in err  # 4 units + ft-all
