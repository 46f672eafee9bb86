"""``flexsk demo``: every strategy on one shifted target, compared in a table."""

import time

import numpy as np
import torch
from joblib import Parallel, cpu_count, delayed, parallel_config
from tqdm.auto import tqdm

from . import FlexTuner
from ._text import format_table, key_name
from .bench import LABELS, RECIPES, REFERENCES, STRATEGIES
from .datasets import make_digits_shift, train_val_test_split
from .zoo import load_source_net

__all__ = ["DEMO_STRATEGIES", "run_demo"]

#: Strategies the demo compares: the paper's, as in the bench's grid, as (table label,
#: FlexTuner parameters).
DEMO_STRATEGIES = [(LABELS[name], params) for name, params in STRATEGIES.items()
                   if name not in REFERENCES + RECIPES]


def run_demo(*, arch="conv7", shift="rotation", n_per_class=2, image_size=16,
             max_epochs=None, patience=None, random_state=0, threads=1, jobs=None,
             progress=True):
    """Pretrain (or load) a zoo net, shift the digits, compare every strategy; print a table.

    ``max_epochs`` and ``patience`` are passed on to FlexTuner when not None
    (None leaves the estimator's defaults). The strategies fit in ``jobs``
    processes at once (None: one per ``threads`` cores), each with ``threads``
    torch threads. Returns the table's rows.
    """
    torch.set_num_threads(threads)
    started = time.perf_counter()
    net = load_source_net(arch, image_size=image_size, verbose=1)
    target = make_digits_shift(shift, image_size=image_size, random_state=random_state)
    X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
        target, n_per_class, random_state=random_state)
    source_accuracy = float(np.mean(net.predict(X_test) == y_test))
    print(f"Source net {arch} ({image_size}px) on the {shift!r} target: "
          f"test accuracy {source_accuracy:.3f} before tuning.")
    print(f"Target: {len(y_train)} training images ({n_per_class} per class), "
          f"{len(y_val)} validation, {len(y_test)} test. Each strategy selects on the "
          f"validation images, then refits its pick on training and validation images.")

    settings = {name: value for name, value in
                dict(max_epochs=max_epochs, patience=patience).items() if value is not None}
    fits = (delayed(_fit)(net, params, settings, random_state, threads,
                          (X_train, y_train, X_val, y_val, X_test, y_test))
            for _, params in DEMO_STRATEGIES)
    # the strategies are independent fits: one process per core, `threads` torch threads each
    n_jobs = max(1, min(jobs or cpu_count() // threads, len(DEMO_STRATEGIES)))
    with parallel_config(backend="loky", inner_max_num_threads=threads):
        results = list(tqdm(Parallel(n_jobs=n_jobs, return_as="generator")(fits),
                            total=len(DEMO_STRATEGIES), desc="strategies", unit="strategy",
                            disable=not progress))
    rows = [(label, *result) for (label, _), result in zip(DEMO_STRATEGIES, results)]
    print()
    print(format_table(["strategy", "test accuracy", "selected unit", "fit seconds"], rows))
    print(f"\n(source net before tuning: {source_accuracy:.3f}; units: "
          f"{', '.join(_units(net))}; {n_jobs} process(es) of {threads} torch thread(s); "
          f"total {time.perf_counter() - started:.1f} s)")
    return rows


def _fit(net, params, settings, random_state, threads, data):
    """One strategy's fit, in a worker process: its table cells."""
    torch.set_num_threads(threads)
    X_train, y_train, X_val, y_val, X_test, y_test = data
    tuner = FlexTuner(net, random_state=random_state, **settings, **params)
    tuner.fit(X_train, y_train, X_val=X_val, y_val=y_val)
    return (f"{tuner.score(X_test, y_test):.3f}", key_name(tuner.selected_unit_),
            f"{tuner.fit_time_:.1f}")


def _units(net):
    return [name for name, child in net.module_.named_children()
            if any(True for _ in child.parameters())]
