"""Predictions in one thread while another tuner fits in a second thread.

A fitted tuner predicts the target test set in a loop in the main thread
while a flex fit runs in a second thread; the script prints how long the
predictions took (median and maximum) against the same predictions with no
fit running, and whether they equal the serial ones.

    python benchmarks/bench_threads.py

Each thread uses one torch thread (two threads on two cores).
"""

import statistics
import sys
import threading
import time

import numpy as np
import torch

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, train_val_test_split
from flexsk.zoo import load_source_net


def timed_predictions(tuner, X, until):
    times, results = [], []
    while not until():
        start = time.perf_counter()
        results.append(tuner.predict_proba(X))
        times.append(time.perf_counter() - start)
    return times, results


def main():
    torch.set_num_threads(1)
    net = load_source_net("conv7")
    bunch = make_digits_shift("rotation", random_state=0)
    X, y, X_val, y_val, X_test, _ = train_val_test_split(bunch, 10, random_state=0)
    fitted = FlexTuner(net, strategy="ft-fc", random_state=0).fit(X, y, X_val=X_val,
                                                                  y_val=y_val)
    expected = fitted.predict_proba(X_test)

    alone = []
    for _ in range(50):
        start = time.perf_counter()
        fitted.predict_proba(X_test)
        alone.append(time.perf_counter() - start)
    done = threading.Event()

    def fit_flex():
        torch.set_num_threads(1)
        FlexTuner(net, strategy="flex", random_state=0).fit(X, y, X_val=X_val, y_val=y_val)
        done.set()

    thread = threading.Thread(target=fit_flex)
    started = time.perf_counter()
    thread.start()
    during, results = timed_predictions(fitted, X_test, done.is_set)
    thread.join()
    fit_seconds = time.perf_counter() - started
    same = all(np.array_equal(r, expected) for r in results)
    print(f"{len(X_test)} images per prediction; alone: median "
          f"{1000 * statistics.median(alone):.1f} ms, max {1000 * max(alone):.1f} ms "
          f"({len(alone)} predictions)")
    print(f"during a {fit_seconds:.1f} s flex fit in another thread: median "
          f"{1000 * statistics.median(during):.1f} ms, max {1000 * max(during):.1f} ms "
          f"({len(during)} predictions); equal to the serial predictions: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
