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
    with parallel_config(backend="loky", inner_max_num_threads=1):
        fit(conv4, target, n_jobs=2, verbose=1)
    err = capsys.readouterr().err
    assert "5/5" in err  # 4 units + ft-all


class _DropoutNet(torch.nn.Module):
    """Dropout draws from torch's global generator while training."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                      torch.nn.Dropout(0.5))
        self.fc1 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(32),
                                       torch.nn.ReLU(), torch.nn.Dropout(0.5))
        self.fc2 = torch.nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.fc1(self.c1(x)))


@pytest.mark.parametrize("repeat", range(2))
def test_threading_backend_trains_one_at_a_time_and_matches_serial(target, one_thread, repeat):
    # Threads share torch's generator and torch.fx tracing: they must not train concurrently.
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)
    net = NeuralNetClassifier(_DropoutNet(), criterion=torch.nn.CrossEntropyLoss, lr=1e-3)
    serial = fit(net, target, max_epochs=3, patience=None)
    with parallel_config(backend="threading"), \
            pytest.warns(UserWarning, match="threads of this process"):
        threaded = fit(net, target, max_epochs=3, patience=None, n_jobs=4)
    assert_same(threaded, serial, target["X_test"])


def test_loky_with_a_module_class_that_cannot_be_imported(target, one_thread):
    # A class defined in a function (or in a notebook's __main__) is not importable by
    # name in the workers: the candidates must travel without the skorch net.
    from skorch import NeuralNetClassifier

    class Local(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                                            torch.nn.ReLU())
            self.head = torch.nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.body(x))

    torch.manual_seed(0)
    net = NeuralNetClassifier(Local(), criterion=torch.nn.CrossEntropyLoss, lr=1e-3)
    serial = fit(net, target, max_epochs=2)
    with parallel_config(backend="loky", inner_max_num_threads=1):
        parallel = fit(net, target, max_epochs=2, n_jobs=2)
    assert_same(parallel, serial, target["X_test"])
