"""n_jobs: flex's independent candidates give the same result on any joblib backend."""

import re

import numpy as np
import pytest
import torch
from joblib import parallel_config
from sklearn.exceptions import ConvergenceWarning

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
    # every run is named when its worker reports it, then the refit; the bar ends full
    assert all(name in err for name in ("conv1", "conv2", "fc1", "fc2", "all", "refit"))
    done, total = map(int, re.findall(r"(\d+)/(\d+) \[", err)[-1])
    assert done == total > 0


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
    net = NeuralNetClassifier(_DropoutNet(), criterion=torch.nn.CrossEntropyLoss, lr=0.1)
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
    net = NeuralNetClassifier(Local(), criterion=torch.nn.CrossEntropyLoss, lr=0.1)
    serial = fit(net, target, max_epochs=2)
    with parallel_config(backend="loky", inner_max_num_threads=1):
        parallel = fit(net, target, max_epochs=2, n_jobs=2)
    assert_same(parallel, serial, target["X_test"])


# -- threads: no process-wide lock ---------------------------------------------------------


def test_sequential_backend_trains_in_place_without_a_warning(conv4, target, one_thread):
    # parallel_config(backend="sequential") runs tasks in the calling thread, one at a time
    import warnings

    serial = fit(conv4, target, max_epochs=2)
    with parallel_config(backend="sequential"), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # 2 epochs: still improving
        sequential = fit(conv4, target, max_epochs=2, n_jobs=2)
    assert_same(sequential, serial, target["X_test"])


def test_nested_joblib_call_warns_only_for_concurrent_threads(conv4, target, one_thread):
    # a fit inside a joblib task whose nested backend runs sequentially: no warning
    import warnings

    from joblib import Parallel, delayed

    def nested_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)  # 2 epochs: still improving
            return fit(conv4, target, max_epochs=2, n_jobs=2).selected_unit_

    with parallel_config(backend="sequential"):
        picks = Parallel(n_jobs=2)(delayed(nested_fit)() for _ in range(2))
    assert picks[0] == picks[1]


def test_predict_never_waits_on_another_tuners_fit(conv7, target, one_thread):
    # The fit in the other thread is held inside a training forward pass; a process-wide
    # lock around fits would make the prediction wait for it forever.
    import threading

    fitted = fit(conv7, target, strategy="ft-fc", max_epochs=2)
    expected = fitted.predict_proba(target["X_test"])
    inside, release = threading.Event(), threading.Event()

    def hold(module, args):
        if torch.is_grad_enabled() and not inside.is_set():  # the first training step
            inside.set()
            release.wait(60)

    conv7.module_.conv1.register_forward_pre_hook(hold)
    fitting = threading.Thread(target=fit, args=(conv7, target),
                               kwargs=dict(strategy="ft-all", max_epochs=1))
    fitting.start()
    try:
        assert inside.wait(60)
        results = []
        predicting = threading.Thread(
            target=lambda: results.append(fitted.predict_proba(target["X_test"])))
        predicting.start()
        predicting.join(30)
        assert not predicting.is_alive(), "the prediction waited on the other tuner's fit"
        np.testing.assert_array_equal(results[0], expected)
    finally:
        release.set()
        fitting.join(60)


def test_tracing_in_one_thread_while_another_predicts(conv7, target, one_thread):
    # torch.fx patches nn.Module.__call__ process-wide while it traces: forward passes in
    # other threads must neither enter the trace nor run through the tracer.
    import threading

    from flexsk._surgery import Cuts
    from flexsk._units import resolve_units

    fitted = fit(conv7, target, strategy="ft-fc", max_epochs=1)
    expected = fitted.predict_proba(target["X_test"])
    module = conv7.module_.eval()
    probe = torch.as_tensor(target["X"][:2])
    units = resolve_units(module, "auto", probe)
    stop, results = threading.Event(), []

    def predict_loop():
        while not stop.is_set():
            results.append(fitted.predict_proba(target["X_test"][:64]))

    predicting = threading.Thread(target=predict_loop)
    predicting.start()
    try:
        for _ in range(10):
            cuts = Cuts(module, units, probe)
            assert all(unit.name in cuts for unit in units[1:])
    finally:
        stop.set()
        predicting.join(60)
    assert results
    for proba in results:
        np.testing.assert_array_equal(proba, expected[:64])


class _ThreadLog:
    """on_epoch, in the workers: each process's torch thread count, to a file."""

    def __init__(self, path):
        self.path = path

    def __call__(self, record):
        if record.epoch == 0 and not record.refit:  # the refit trains in the fitting process
            import os

            with open(self.path, "a") as f:
                f.write(f"{os.getpid()} {torch.get_num_threads()}\n")


def test_workers_never_oversubscribe_the_cores(conv4, target, tmp_path, monkeypatch):
    from joblib import cpu_count

    if cpu_count() < 2:
        pytest.skip("a single core: the runs train in the fitting process")
    # inherited by loky's workers unless the tuner limits their threads itself
    monkeypatch.setenv("OMP_NUM_THREADS", str(cpu_count()))
    log = tmp_path / "threads.txt"
    # more jobs than cores: loky alone would start one worker per job
    fit(conv4, target, n_jobs=cpu_count() + 1, max_epochs=1, on_epoch=_ThreadLog(log))
    threads = dict(line.split() for line in log.read_text().splitlines())
    assert len(threads) >= 2  # the runs trained in worker processes
    assert len(threads) * max(int(t) for t in threads.values()) <= cpu_count()
