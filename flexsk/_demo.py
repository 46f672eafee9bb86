"""``flexsk demo``: every strategy on one shifted target, compared in a table."""

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import FlexTuner
from ._text import format_table, key_name
from .bench import LABELS, REFERENCES, STRATEGIES
from .datasets import make_digits_shift, train_val_test_split
from .zoo import load_source_net

__all__ = ["DEMO_STRATEGIES", "run_demo"]

#: Strategies the demo compares: the bench's grid, as (table label, FlexTuner parameters).
DEMO_STRATEGIES = [(LABELS[name], params) for name, params in STRATEGIES.items()
                   if name not in REFERENCES]


def run_demo(*, arch="conv7", shift="rotation", n_per_class=2, image_size=16,
             max_epochs=None, patience=None, random_state=0, threads=1, progress=True):
    """Pretrain (or load) a zoo net, shift the digits, compare every strategy; print a table.

    ``max_epochs`` and ``patience`` are passed on to FlexTuner when not None
    (None leaves the estimator's defaults). Returns the table's rows.
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
    rows = []
    for label, params in tqdm(DEMO_STRATEGIES, desc="strategies", unit="strategy",
                              disable=not progress):
        tuner = FlexTuner(net, random_state=random_state, **settings, **params)
        tuner.fit(X_train, y_train, X_val=X_val, y_val=y_val)
        rows.append((label, f"{tuner.score(X_test, y_test):.3f}",
                     key_name(tuner.selected_unit_), f"{tuner.fit_time_:.1f}"))
    print()
    print(format_table(["strategy", "test accuracy", "selected unit", "fit seconds"], rows))
    print(f"\n(source net before tuning: {source_accuracy:.3f}; units: "
          f"{', '.join(tuner.units_)}; total {time.perf_counter() - started:.1f} s)")
    return rows
